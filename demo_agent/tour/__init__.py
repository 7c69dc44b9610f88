"""The learner's tour (`authserver demo --tour`): every flow, unattended, fully printed.

- `script`: the scenario (sign-in, token exchange, an approved and a denied trade,
  the calendar through the token vault, sign-out, the audit log).
- `narrator`: step headings naming each standard, every HTTP exchange, decoded tokens.
- `user`: the clearly labelled simulated person at the browser; `browser` does the
  same approvals in headless Chromium; `pages` reads the HTML forms.
"""
