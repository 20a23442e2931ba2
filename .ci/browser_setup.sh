#!/usr/bin/env bash
# CI: headless Chromium and its driver (Debian's chromium + chromium-driver) for the browser test
# (tests/test_browser.py). Without root or without the packages the test skips and says why.
set -uo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  (apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1)) || \
   echo "note: chromium/chromium-driver not installed; tests/test_browser.py will be skipped"
else
  echo "note: not root, chromium/chromium-driver not installed; tests/test_browser.py will be skipped"
fi
exit 0
