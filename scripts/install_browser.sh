#!/usr/bin/env bash
# Install the Chromium the dashboard's browser tests drive (Playwright with an external browser:
# `playwright install` is never run, so no browser is downloaded from a CDN).
# Idempotent: does nothing when /usr/bin/chromium already exists.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    echo ">> Chromium already installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo ">> $CHROMIUM is missing and apt-get is not available: install Chromium by hand." >&2
    echo "   The browser tests will be skipped until $CHROMIUM exists." >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo ">> Not root and no sudo: cannot install Chromium." >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
echo ">> Installing Chromium for the browser tests: apt-get update"
$SUDO apt-get update -q
echo ">> apt-get install -y chromium"
$SUDO apt-get install -y -q --no-install-recommends chromium
echo ">> Installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
