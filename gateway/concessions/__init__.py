"""Waivers (减免), instalment plans (分期) and pauses of collection (停催) that agencies ask for
and the lender decides within approval limits."""
