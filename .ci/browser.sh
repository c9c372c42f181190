#!/usr/bin/env bash
# Installs Debian's headless Chromium for the report test, when it is missing and we can (root + apt).
set -u
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/tmp/roadseg-chromium.log 2>&1 \
    || echo "warning: could not install chromium (see /tmp/roadseg-chromium.log); the browser test will fail in CI"
else
  echo "note: chromium not installed and not root; the browser test will be skipped outside CI"
fi
exit 0
