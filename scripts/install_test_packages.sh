#!/usr/bin/env bash
# Install the Debian packages the test suite and the spoken evaluation use:
#   chromium                      the dashboard / visitor-page browser tests (Playwright drives
#                                 this external browser: `playwright install` is never run)
#   sox                           audio conversion for the spoken evaluation's caller voices
#   espeak-ng                     eSpeak NG voices for simulated callers (one voice family of
#                                 the spoken evaluation; the server's own eSpeak fallback is a
#                                 Python package and does not need it)
#   asterisk-core-sounds-es-wav   human es-MX recordings (digits, numbers, words) used as real
#                                 caller speech in recognition tests and spoken conversations
#   asterisk-prompt-es-co         human Colombian prompts (a second human voice)
#   haproxy                       the load balancer in front of three `taina serve` processes
#                                 (tests/integration/test_balancer.py, deploy/haproxy.cfg)
# Idempotent: installs only what is missing.
set -euo pipefail

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v sox >/dev/null 2>&1 || missing+=(sox)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
[ -d /usr/share/asterisk/sounds/es_MX_f_Allison/digits ] || missing+=(asterisk-core-sounds-es-wav)
[ -d /usr/share/asterisk/sounds/es/digits ] || missing+=(asterisk-prompt-es-co)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)

if [ ${#missing[@]} -eq 0 ]; then
    echo ">> Test packages already installed (chromium, sox, espeak-ng, Spanish human speech, haproxy)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo ">> Missing ${missing[*]} and apt-get is not available: install them by hand." >&2
    echo "   The tests that need them say they were skipped and why." >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo ">> Not root and no sudo: cannot install ${missing[*]}." >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
echo ">> Installing test packages: ${missing[*]} (apt-get update first)"
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
echo ">> Installed: ${missing[*]}"
