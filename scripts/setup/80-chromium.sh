# Debian's Chromium, for the status page's browser test (sourced by scripts/test.sh;
# idempotent): the test loads the page headless and reads the rendered DOM.

chromium_setup() {
  command -v chromium >/dev/null || ensure_packages chromium
  chromium --version
}

chromium_setup
