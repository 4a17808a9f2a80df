# shellcheck shell=bash
# The schemathesis prerequisite (sourced by scripts/check and scripts/schemathesis): a Python
# virtual environment with a pinned schemathesis, made on first use from PyPI.
#
#   CAIRN_SCHEMATHESIS_VENV  where it is (default: target/tools/schemathesis-<version>)

schemathesis_version=4.32.5
schemathesis_venv=${CAIRN_SCHEMATHESIS_VENV:-target/tools/schemathesis-$schemathesis_version}

probe_schemathesis() {
  [[ -x $schemathesis_venv/bin/st ]] &&
    [[ $("$schemathesis_venv/bin/st" --version 2>/dev/null) == *"$schemathesis_version"* ]]
}

provide_schemathesis() {
  command -v python3 >/dev/null || return 1
  echo "check: installing schemathesis $schemathesis_version into $schemathesis_venv" >&2
  rm -rf "$schemathesis_venv"
  python3 -m venv "$schemathesis_venv" >&2 &&
    "$schemathesis_venv/bin/pip" install --quiet --disable-pip-version-check \
      "schemathesis==$schemathesis_version" >&2 &&
    probe_schemathesis
}

explain_schemathesis() {
  echo "no schemathesis $schemathesis_version: it could not be installed into $schemathesis_venv (needs python3 with venv and pip, and PyPI); install python3-venv, or set CAIRN_SCHEMATHESIS_VENV to a virtual environment that has it"
}
