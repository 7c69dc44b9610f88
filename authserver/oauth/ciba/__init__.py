"""OpenID Connect Client-Initiated Backchannel Authentication (CIBA Core 1.0) with RAR.

`endpoint` handles /bc-authorize, `decisions` records what the user decided on the
approval page and queues ping/push callbacks, `issuance` mints the tokens, and the
token-endpoint grant lives in `oauth/grants/ciba.py`.
"""

GRANT_TYPE = "urn:openid:params:grant-type:ciba"
DELIVERY_MODES = ("poll", "ping", "push")
