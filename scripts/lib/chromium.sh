# shellcheck shell=bash
# The Chromium prerequisite (sourced by scripts/check): Debian's `chromium` and
# `chromium-driver` for the web UI's browser tests (crates/cairn-server/tests/ui_browser.rs).
# Installed with apt-get when it is missing and this runs as root on Debian.

chromium_packages=(chromium chromium-driver fonts-dejavu-core)

probe_chromium() {
  command -v chromedriver >/dev/null &&
    { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; }
}

provide_chromium() {
  [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null || return 1
  echo "check: installing ${chromium_packages[*]} with apt-get" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${chromium_packages[@]}" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${chromium_packages[@]}" >/dev/null 2>&1; } ||
    return 1
  probe_chromium
}

explain_chromium() {
  echo "no Chromium with chromedriver for the web UI's browser tests: install them (Debian: sudo apt-get install ${chromium_packages[*]}), with both on the PATH"
}
