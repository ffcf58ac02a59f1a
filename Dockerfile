# syntax=docker/dockerfile:1
#
# promptgate container image (see README.md, "Deploying").
#
#   docker build -t promptgate .
#   docker run --rm --stop-timeout 35 -p 8080:8080 -e OPENAI_API_KEY promptgate
#
# --stop-timeout: docker stop sends SIGKILL after 10 s by default, before the 25 s drain ends.
# A shutdown takes up to 25 s of drain + 0.2 s for the last writes + 5 s to flush spans
# (30.2 s): 35 s leaves a margin, 30 s would cut the flush of the drain's last spans.
#
# Signals: CMD runs node directly (exec form, no shell, no npm), so node is PID 1 and
# receives SIGTERM itself; the gateway installs SIGTERM/SIGINT handlers (fail /readyz,
# drain for server.drain_timeout_ms, exit 0). The server spawns no child processes, so
# there are no zombies to reap and no init process (tini) is needed. Run with
# `docker run --init` if you use the image for CLI commands that start subprocesses.
#
# test/deploy/dockerfile.test.ts checks this file statically, and
# test/deploy/image-cmd.test.ts replays the runtime stage and runs CMD as written.

########## build: compile TypeScript to dist/ ##########
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

########## runtime: production dependencies + dist + shipped config ##########
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    PROMPTGATE_CONFIG=/app/gateway.config.yaml
WORKDIR /app
# Production dependencies only; --ignore-scripts: no install script is needed at run time
# (the only one in the production tree, protobufjs's, is a version notice).
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --ignore-scripts --no-audit --no-fund
COPY --from=build /app/dist ./dist
# Tokenizer vocabularies (read from ../../assets relative to dist/tokenizer/).
COPY assets ./assets
# Shipped config and user content. templates.dir in gateway.config.yaml is relative to the
# config file, so /app/config/templates. Override with a mount and PROMPTGATE_CONFIG.
COPY config ./config
COPY gateway.config.yaml ./
# Files from the build context keep the checkout's modes: one made with a strict umask
# (077) would leave them unreadable for the runtime user (EACCES at start). Made readable
# here (only these: a chmod copies what it touches into a new layer).
RUN chmod -R a+rX package.json package-lock.json assets config gateway.config.yaml
# Files stay root-owned and read-only for the runtime user. Numeric uid:gid (the image's
# `node` user) so Kubernetes can verify runAsNonRoot without resolving names.
USER 1000:1000
EXPOSE 8080
# Docker/compose only (Kubernetes ignores HEALTHCHECK and uses the probes in deploy/).
# No curl in the slim image: node's fetch. PORT is honoured when set.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "dist/main.js"]
