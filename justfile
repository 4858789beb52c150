# Automatic dubbing backend. `just demo` to see it work, `just test` to check it.

set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv"
py := venv / "bin/python"
apt_packages := "ffmpeg espeak-ng apertium apertium-eng-spa apertium-eng-cat apertium-fr-es apertium-es-pt apertium-spa-cat chromium"

export NUMBA_CACHE_DIR := env_var_or_default("NUMBA_CACHE_DIR", justfile_directory() / ".dubbing/numba-cache")
export HF_HUB_OFFLINE := "1"

default:
    @just --list

# Install what is missing: system packages (ffmpeg, espeak-ng, Apertium) and the Python environment.
setup: system-packages python-env

# Debian packages the offline engines and the audio code need (installed only when absent).
system-packages:
    #!/usr/bin/env bash
    set -euo pipefail
    missing=()
    for pkg in {{apt_packages}}; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
    echo "installing: ${missing[*]}"
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# The virtual environment with the project and its development tools.
python-env:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ ! -x {{py}} ]; then python3 -m venv {{venv}}; fi
    stamp={{venv}}/.installed-$(sha256sum pyproject.toml | cut -c1-16)
    if [ ! -f "$stamp" ]; then
        {{py}} -m pip install -q --upgrade pip
        {{py}} -m pip install -q -e '.[dev]'
        rm -f {{venv}}/.installed-*; touch "$stamp"
    fi

# Run the API and the supervisor (embedded database and storage unless configured otherwise).
serve: setup
    {{venv}}/bin/dubbing serve

# Apply pending SQL migrations.
migrate: setup
    {{venv}}/bin/dubbing migrate

# Mint a local access token for a user id.
token user="demo-user": python-env
    @{{venv}}/bin/dubbing token --user {{user}}

# Dub a sample (or your file): just demo [voice.wav [background.wav]] [--to es,fr]
demo *args: setup
    {{venv}}/bin/dubbing demo {{args}}

# Lint and type-check.
lint: python-env
    {{venv}}/bin/ruff check service tests bench scripts
    {{venv}}/bin/mypy service
    {{py}} scripts/check_sql_placement.py

# Everything CI checks: lint, types, and the test suite on real PostgreSQL and real engines.
test *args: setup lint
    {{py}} -m pytest -q {{args}}

# The benchmarks (figures printed and saved under bench/results/): just bench [--quick]
bench *args: setup
    for script in bench/*.py; do {{py}} "$script" {{args}}; done

# Which engine each stage will use, and a cheap authenticated call to each configured provider.
doctor: python-env
    {{venv}}/bin/dubbing doctor
