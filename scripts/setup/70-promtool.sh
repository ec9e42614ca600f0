# promtool for the checks of deploy/prometheus (ftp-listener/tests/deploy.rs; sourced by
# scripts/test.sh; idempotent).
#
# promtool ships in Debian's `prometheus` package. Installing that package also installs and
# starts a Prometheus server, which the tests do not want running, so the package is
# downloaded and only unpacked (as 30-ftp.sh does for vsftpd) into $TEST_ROOT/prometheus-pkg;
# $TEST_ROOT/promtool links to its promtool, where the test looks for it (or $PROMTOOL, or
# promtool on PATH). Where the package cannot be had, the test skips its promtool checks and
# says so.

promtool_setup() {
  local pkg="$TEST_ROOT/prometheus-pkg"
  if [ ! -x "$pkg/usr/bin/promtool" ]; then
    local dl
    dl=$(mktemp -d)
    if ! (cd "$dl" && apt-get download prometheus >/dev/null 2>&1); then
      [ -n "${APT_UPDATED:-}" ] || { apt-get update -qq && export APT_UPDATED=1; }
      if ! (cd "$dl" && apt-get download prometheus >/dev/null 2>&1); then
        echo "prometheus package not available: the deploy test skips promtool" >&2
        rm -rf "$dl"
        return 0
      fi
    fi
    dpkg -x "$dl"/prometheus_*.deb "$pkg"
    rm -rf "$dl"
  fi
  ln -sf "$pkg/usr/bin/promtool" "$TEST_ROOT/promtool"
  export PROMTOOL="$TEST_ROOT/promtool"
  "$PROMTOOL" --version | head -n 1
}

promtool_setup
