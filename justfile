# Automatic dubbing backend. `just demo` to see it work, `just test` to check it.

set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv"
py := venv / "bin/python"
apt_packages := "ffmpeg librubberband2 libespeak-ng1 espeak-ng apertium apertium-eng-spa apertium-eng-cat apertium-fr-es apertium-es-pt apertium-spa-cat apertium-spa-ita chromium pocketsphinx-testdata asterisk-core-sounds-en-g722 asterisk-core-sounds-fr-g722 asterisk-core-sounds-it-g722 asterisk-core-sounds-ru-g722"
bench_apt_packages := "asterisk-core-sounds-en asterisk-core-sounds-fr asterisk-core-sounds-it asterisk-core-sounds-es asterisk-core-sounds-es-g722"

export NUMBA_CACHE_DIR := env_var_or_default("NUMBA_CACHE_DIR", justfile_directory() / ".dubbing/numba-cache")
export HF_HUB_OFFLINE := "1"

default:
    @just --list

# Install what is missing: system packages (ffmpeg, espeak-ng, Apertium) and the Python environment.
setup: system-packages python-env

# Debian packages the offline engines and the audio code need (installed only when absent).
system-packages: (_apt apt_packages)

# The benchmarks' real speech needs the prompts' reference texts too (in the non-codec asterisk packages).
bench-packages: (_apt bench_apt_packages)

# Install the Debian packages named in `packages` that are not installed yet.
_apt packages:
    #!/usr/bin/env bash
    set -euo pipefail
    missing=()
    for pkg in {{packages}}; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
    echo "installing: ${missing[*]}"
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# The virtual environment: exactly requirements.lock (hash-checked), then the project itself, editable.
python-env:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ ! -x {{py}} ]; then python3 -m venv {{venv}}; fi
    stamp={{venv}}/.installed-$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
    if [ ! -f "$stamp" ]; then
        {{py}} -m pip install -q --require-hashes -r requirements.lock
        {{py}} -m pip install -q --no-deps --no-build-isolation -e .
        {{py}} scripts/check_lock.py --remove-extraneous
        rm -f {{venv}}/.installed-*; touch "$stamp"
    fi

# Resolve pyproject.toml's ranges into requirements.lock again (newest versions that fit), with hashes.
lock: python-env
    {{venv}}/bin/uv pip compile pyproject.toml --extra dev --generate-hashes --universal --python-version 3.11 \
        --upgrade -o requirements.lock
    @echo "requirements.lock refreshed: run \`just setup\` and \`just test\`, then commit it"

# Run the API and the supervisor (embedded database and storage unless configured otherwise): just serve [--role api|worker]
serve *args: setup
    {{venv}}/bin/dubbing serve {{args}}

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
    {{py}} scripts/check_lock.py
    {{venv}}/bin/ruff check service tests bench scripts
    {{venv}}/bin/mypy service
    {{py}} scripts/check_sql_placement.py

# Everything CI checks: lint, types, and the test suite on real PostgreSQL, Redis and engines.
test *args: setup lint redis
    {{py}} -m pytest -q {{args}}

# A Redis on 127.0.0.1:6379 for QUEUE_BACKEND=dramatiq (and its tests): started, without persistence, when none answers.
redis:
    #!/usr/bin/env bash
    set -euo pipefail
    if ! command -v redis-server >/dev/null; then  # the tests also start servers of their own
        sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
        $sudo_cmd apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends redis-server >/dev/null
    fi
    if [ -n "${REDIS_URL:-}" ]; then exit 0; fi
    if redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then exit 0; fi
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG && exit 0; sleep 0.1; done
    echo "redis-server did not answer on 127.0.0.1:6379" >&2; exit 1

# The benchmarks (figures printed and saved under bench/results/): just bench [--quick]
bench *args: setup bench-packages
    for script in bench/*.py; do {{py}} "$script" {{args}}; done

# Which engine each stage will use, and a cheap authenticated call to each configured provider.
doctor: python-env
    {{venv}}/bin/dubbing doctor
