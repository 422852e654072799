# syntax=docker/dockerfile:1
# stylebot: one image for the bot and for Celery workers.
#
#   docker build -t stylebot .
#   docker run --rm --env-file .env -v stylebot-data:/data stylebot          # the bot, local pool
#   docker run --rm -e STYLEBOT_REDIS_URL=redis://HOST:6379/0 stylebot \
#       celery --app engine.tasks worker --concurrency 1 -l info            # a worker
#
# A CUDA worker image (NVIDIA GPUs; the host needs only the driver and the NVIDIA Container
# Toolkit): the same image with the `gpu` extra (tensorflow[and-cuda]) instead of `cpu`:
#
#   docker build --build-arg VARIANT=gpu -t stylebot:gpu .
#   docker run --rm --gpus all -e STYLEBOT_REDIS_URL=redis://HOST:6379/0 stylebot:gpu \
#       celery --app engine.tasks worker --concurrency 1 -l info
#
# The build needs the internet (PyPI, the Keras weights bucket, Wikimedia Commons); a running
# container does not: the VGG19 weights and the built-in preset paintings are baked in.
# Layers go from the least to the most often changed: system, dependencies, weights, code.

FROM python:3.11-slim

# cpu (the default): tensorflow-cpu on x86_64, tensorflow elsewhere. gpu: tensorflow[and-cuda]
# with NVIDIA's CUDA and cuDNN libraries as wheels (several GB). pyproject's extras of that name.
ARG VARIANT=cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_HOME=/opt/keras \
    STYLEBOT_DATA_DIR=/data \
    STYLEBOT_SEED_DIR=/opt/stylebot/seed

# DejaVu Sans for the names on the gallery's contact sheets (bot/gallery.py; Pillow's built-in
# font has no Cyrillic). g++ builds the engine's native ops (Winograd convolutions and the
# bfloat16 Gram matrix, engine/winograd.py) for the CPU it runs on: once at image build, again on first use if the CPU differs.
RUN apt-get update \
 && apt-get install --yes --no-install-recommends fonts-dejavu-core g++ \
 && rm -rf /var/lib/apt/lists/*

# The runtime user. KERAS_HOME must stay writable by it: Keras ignores a cache directory it
# cannot write to (it falls back to /tmp/.keras and downloads again), so run the image as this
# user, not with another --user.
RUN groupadd --system --gid 10001 stylebot \
 && useradd --system --uid 10001 --gid stylebot --create-home --home-dir /home/stylebot \
        --shell /usr/sbin/nologin stylebot \
 && mkdir -p /data "$KERAS_HOME" "$STYLEBOT_SEED_DIR" \
 && chown stylebot:stylebot /data "$KERAS_HOME" "$STYLEBOT_SEED_DIR"

# 1. Dependencies only (this layer is rebuilt when pyproject.toml changes, not when code does):
#    the core ones, TensorFlow from the extra named by VARIANT, and Celery's.
#    cpu: tensorflow-cpu on x86_64, tensorflow elsewhere (the environment markers decide).
COPY pyproject.toml /tmp/src/pyproject.toml
RUN case "$VARIANT" in cpu|gpu) ;; *) echo "VARIANT must be cpu or gpu, not '$VARIANT'" >&2; exit 1;; esac \
 && python -c "import sys, tomllib; p = tomllib.load(open('/tmp/src/pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies'][sys.argv[1]] + p['optional-dependencies']['celery']))" "$VARIANT" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# 2. The ImageNet VGG19 weights (80 MB), downloaded now, as the runtime user, into KERAS_HOME,
#    so that no container ever downloads them. Depends on the dependencies only.
USER stylebot
RUN python -c "import keras; keras.applications.VGG19(include_top=False, weights='imagenet')" \
 && ls -l "$KERAS_HOME/models/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
USER root

# 3. The project itself, installed non-editable (its dependencies are already there), with its
#    translations compiled first (bot/locale/*/LC_MESSAGES/stylebot.mo; Babel is a dependency).
COPY README.md LICENSE /tmp/src/
COPY bot /tmp/src/bot
COPY engine /tmp/src/engine
#    The gpu image checks that its TensorFlow is the CUDA build (no tensorflow-cpu crept in).
RUN pybabel compile --domain stylebot --directory /tmp/src/bot/locale \
 && pip install "/tmp/src[$VARIANT,celery]" \
 && rm -rf /tmp/src \
 && python -c "import bot.presets, engine.cli, engine.tasks; import bot.i18n as i; i.check_catalogs()" \
 && if [ "$VARIANT" = gpu ]; then \
        python -c "import tensorflow as tf; assert tf.test.is_built_with_cuda(), 'not a CUDA build'"; \
    fi

# The engine's native ops, built now for this CPU into the runtime user's cache (a
# container on another kind of CPU builds its own on first use, with the g++ installed above).
USER stylebot
RUN python -c "from engine import winograd; assert winograd.load_ops() is not None"
USER root

# 4. The built-in preset paintings. `python -m bot.presets fetch` stores them in the SQLite
#    database of STYLEBOT_DATA_DIR, and /data is a volume: a database written there at build
#    time would be hidden by the volume (or copied only into a brand-new named volume). So the
#    build fetches them into a seed database inside the image, and the entrypoint copies that
#    seed to /data when the bot starts and /data has no database yet. An existing database is
#    never touched. The build fails if a painting cannot be downloaded.
USER stylebot
RUN STYLEBOT_DATA_DIR="$STYLEBOT_SEED_DIR" python -m bot.presets fetch \
 && STYLEBOT_DATA_DIR="$STYLEBOT_SEED_DIR" python -m bot.presets list
USER root

# The entrypoint: seed the database when the bot starts (not for workers or other commands),
# then exec the command. The copy goes through SQLite's backup API into a temporary file that
# is renamed into place, so a container killed half-way leaves no half-written database.
COPY <<'EOF' /usr/local/bin/stylebot-entrypoint
#!/bin/sh
set -eu
case "$*" in
    "python -m bot"|stylebot)
        data_dir="${STYLEBOT_DATA_DIR:-data}"
        seed="${STYLEBOT_SEED_DIR:-/opt/stylebot/seed}/stylebot.sqlite3"
        if [ ! -e "$data_dir/stylebot.sqlite3" ] && [ -f "$seed" ]; then
            mkdir -p "$data_dir"
            python -c '
import os, sqlite3, sys
seed, db = sys.argv[1], sys.argv[2]
tmp = db + ".seed-tmp"
src = sqlite3.connect("file:" + seed + "?mode=ro&immutable=1", uri=True)
dst = sqlite3.connect(tmp)
src.backup(dst)
dst.close()
src.close()
os.replace(tmp, db)
' "$seed" "$data_dir/stylebot.sqlite3"
            echo "stylebot: seeded $data_dir/stylebot.sqlite3 with the built-in presets" >&2
        fi
        ;;
esac
exec "$@"
EOF
RUN chmod 0755 /usr/local/bin/stylebot-entrypoint

USER stylebot
WORKDIR /home/stylebot
VOLUME ["/data"]

# Healthy = the database passes SQLite's quick_check (read-only; WAL lets it run while the bot
# writes) and the bot touched data/heartbeat in the last two minutes (its event loop is alive).
# No network needed. Celery workers have no database: docker-compose.yml gives them their own check.
HEALTHCHECK --interval=60s --timeout=20s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, sqlite3, sys, time; d = os.environ.get('STYLEBOT_DATA_DIR') or 'data'; c = sqlite3.connect('file:' + os.path.join(d, 'stylebot.sqlite3') + '?mode=ro', uri=True, timeout=10); ok = c.execute('PRAGMA quick_check').fetchone()[0] == 'ok'; age = time.time() - os.path.getmtime(os.path.join(d, 'heartbeat')); sys.exit(0 if ok and age < 120 else 1)"]

ENTRYPOINT ["/usr/local/bin/stylebot-entrypoint"]
CMD ["python", "-m", "bot"]
