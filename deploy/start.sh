#!/bin/sh
# The image's start command: the API (`churnfs serve` on HOST:PORT).
#
# On a single-container platform (Render, Railway, Hugging Face Spaces) nothing else builds the
# world, so CHURNFS_BOOTSTRAP_USERS=N (N > 0) makes this script do it first, in the
# background, while the API starts and answers /health with 503 and what is missing:
#
#   1. `churnfs online-store up`: the Redis at REDIS_CONNECTION_STRING when it answers, else a
#      private redis-server under DATA_DIR (restarted after a container restart);
#   2. once per DATA_DIR: generate (N users), features, apply, then train;
#   3. every start: materialize (Redis may have been emptied; a no-op write rule otherwise).
#
# The API picks each piece up as it appears (no restart). REDIS_HOST and REDIS_PORT (what
# Render's Key Value hands a service) stand in for REDIS_CONNECTION_STRING when it is unset.
# Without CHURNFS_BOOTSTRAP_USERS (docker compose, EC2) this is exactly `churnfs serve`.
set -eu

if [ -z "${REDIS_CONNECTION_STRING:-}" ] && [ -n "${REDIS_HOST:-}" ]; then
    REDIS_CONNECTION_STRING="${REDIS_HOST}:${REDIS_PORT:-6379}"
    export REDIS_CONNECTION_STRING
fi

users="${CHURNFS_BOOTSTRAP_USERS:-0}"
if [ "$users" -gt 0 ]; then
    data_dir="${DATA_DIR:-data}"
    mkdir -p "$data_dir"
    # A private redis-server from before a restart is gone: forget it, then find or start one.
    churnfs online-store down
    churnfs online-store up
    (
        if [ ! -f "$data_dir/.bootstrapped" ]; then
            churnfs generate --users "$users"
            churnfs features
            churnfs apply
            churnfs train
            touch "$data_dir/.bootstrapped"
        fi
        churnfs materialize
    ) &
fi

exec churnfs serve
