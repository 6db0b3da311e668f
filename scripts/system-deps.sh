#!/usr/bin/env bash
# Installs the Debian packages that the real-peer tests use, only when missing (a no-op when present).
#   janus      real Janus VideoRoom for tests/e2e/test_janus.py
#   espeak-ng  real synthesised speech for the voice-activity tests
#   iproute2   `ip`, used by bridge/demo/netns-run.sh (with util-linux's `unshare`)
#   chromium   headless browser for tests/e2e/test_dashboard_browser.py (Playwright drives /usr/bin/chromium)
#   janus-demos  Janus's own VideoRoom demo page: chromium participants (test_janus_browsers.py) and the
#                meeting UI the browser-bot test joins (test_browser_bot.py)
#   npm        fetches the third-party WHIP client for tests/e2e/test_whip.py (scripts/test-clients.sh)
#   mosquitto, openssl  a private TLS broker with client certificates and an ACL (tests/integration/test_mqtt_tls.py)
# Called with package names, installs those instead of the default list.
set -euo pipefail
DEFAULT_PACKAGES=(janus janus-demos espeak-ng iproute2 chromium npm mosquitto openssl)
if [ $# -eq 0 ]; then set -- "${DEFAULT_PACKAGES[@]}"; fi
present() {
  dpkg -s "$1" >/dev/null 2>&1 && return 0
  case "$1" in
    # A Node.js installed from elsewhere brings its own npm, and Debian's npm package then
    # conflicts with that nodejs: the npm on PATH serves as well.
    npm) command -v npm >/dev/null 2>&1 ;;
    *) return 1 ;;
  esac
}
need=()
for pkg in "$@"; do
  present "$pkg" || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "system-deps: need root to install: ${need[*]}" >&2; exit 1
fi
echo "system-deps: installing ${need[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
