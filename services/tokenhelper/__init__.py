"""tokenhelper: fresh OIDC access tokens for the notebook; the refresh token stays here."""
