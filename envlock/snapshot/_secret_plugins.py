"""detect-secrets plugins that envlock adds to the standard ones. detect-secrets loads this
file itself (a custom plugin ``path``); it imports nothing of envlock.

Patterns as the secret scanners trufflehog and gitleaks write them for the same tokens.
"""

import re

from detect_secrets.plugins.base import RegexBasedDetector


class HuggingFaceTokenDetector(RegexBasedDetector):
    """Hugging Face access tokens: ``hf_`` (user) or ``api_org_`` (organization) and 34
    letters."""

    secret_type = "Hugging Face Token"
    denylist = (re.compile(r"\b(?:hf|api_org)_[A-Za-z]{34}\b"),)
