# shellcheck shell=bash
# The fault injectors (sourced by scripts/check): Debian's `fiu-utils` (`fiu-run` with its
# POSIX preload library, for failed fdatasyncs: crates/cairn-e2e/tests/sync_errors.rs) and
# `faketime` (libfaketime, a worker's clock set ahead). Installed with apt-get when missing
# and this runs as root on Debian.

fiu_packages=(fiu-utils)
faketime_packages=(faketime)

# apt-get install PACKAGE… as root, quietly, updating the package lists once if needed.
install_with_apt() {
  [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null || return 1
  echo "check: installing $* with apt-get" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1; }
}

probe_fiu() {
  command -v fiu-run >/dev/null && [[ -n $(fiu_posix_preload) ]]
}

# Where fiu-run's POSIX preload library is (empty if nowhere): `fiu-run -x` needs it.
fiu_posix_preload() {
  local library
  for library in /usr/lib/fiu/fiu_posix_preload.so /usr/local/lib/fiu/fiu_posix_preload.so \
    /usr/lib/*/fiu/fiu_posix_preload.so; do
    [[ -f $library ]] && { echo "$library"; return 0; }
  done
}

provide_fiu() {
  install_with_apt "${fiu_packages[@]}" && probe_fiu
}

explain_fiu() {
  echo "no fiu-run (libfiu) for the injected fdatasync errors: install it (Debian: sudo apt-get install ${fiu_packages[*]})"
}

probe_faketime() {
  command -v faketime >/dev/null
}

provide_faketime() {
  install_with_apt "${faketime_packages[@]}" && probe_faketime
}

explain_faketime() {
  echo "no faketime (libfaketime) for the clock-skew test: install it (Debian: sudo apt-get install ${faketime_packages[*]})"
}
