# syntax=docker/dockerfile:1
# kentik-image-cache: a lean, non-root image for Node.js 24 LTS. It runs under
#   --cap-drop ALL --security-opt no-new-privileges --read-only -v <volume>:/cache
# and listens on the unprivileged port 8080 (no file capabilities, no setcap layer).
#
#   docker build -t kentik-image-cache .
#   docker run -d -p 8080:8080 -v kic-cache:/cache --env-file .env kentik-image-cache
#
# Stages: deps (production dependencies of the service only) -> prod-deps (without types, maps,
# docs) and build (bundle the TypeScript service with esbuild)
# -> simulator (the Kentik API simulator, for container tests; build it with
# --target simulator) -> the runtime image (last stage, the default target).

# --- deps: the service's production dependencies, exactly as locked ----------------------------
FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/kentik-simulator/package.json packages/kentik-simulator/
# --workspaces=false: the simulator workspace and its chart and canvas packages stay out.
RUN npm ci --omit=dev --workspaces=false --ignore-scripts --no-audit --no-fund && rm -rf /root/.npm

# --- prod-deps: what of them runs: no type declarations, source maps, docs or package tests -----
FROM deps AS prod-deps
RUN find node_modules -type f \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' \
         -o -name '*.d.cts' -o -iname '*.md' -o -iname 'CHANGELOG*' \) -delete \
    && find node_modules -depth -type d \( -name test -o -name tests -o -name .github \
         -o -name benchmark -o -name benchmarks \) -exec rm -rf {} +

# --- build: bundle the service (src/server.ts and what it imports) into dist/ --------------------
FROM deps AS build
# The bundler, at the version the lock file pins (its platform binary comes as an optional package).
RUN npm install --no-save --no-package-lock --ignore-scripts --no-audit --no-fund \
      "esbuild@$(node -p "require('./package-lock.json').packages['node_modules/esbuild'].version")"
COPY scripts/build.mjs ./scripts/
COPY src ./src
RUN node scripts/build.mjs --no-sourcemap && mkdir -p /out/cache

# --- simulator: the Kentik API simulator for container tests (not part of the service image) ----
FROM node:24-slim AS simulator
WORKDIR /sim
COPY package.json package-lock.json ./
COPY packages/kentik-simulator/package.json packages/kentik-simulator/
RUN npm ci --omit=dev --workspace=kentik-simulator --ignore-scripts --no-audit --no-fund \
    && rm -rf /root/.npm
COPY packages/kentik-simulator/src packages/kentik-simulator/src
USER node
EXPOSE 9100
ENV SIM_HOST=0.0.0.0 SIM_PORT=9100
STOPSIGNAL SIGTERM
CMD ["node", "packages/kentik-simulator/src/cli.ts"]

# --- runtime: the service ------------------------------------------------------------------------
FROM node:24-slim
ENV NODE_ENV=production \
    CACHE_PATH=/cache \
    HOST=0.0.0.0 \
    PORT=8080
WORKDIR /app
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY assets ./assets
# The example requests behind the dashboard's "New chart" menu: the service reads them from
# examples/queries next to dist/ (src/paths.ts), i.e. /app/examples/queries (about 70 KB of JSON).
COPY examples/queries ./examples/queries
# The cache volume belongs to the unprivileged user; everything else stays root-owned, read-only.
# (No RUN in this stage: nothing a build step mounts, such as a CA file, can leave a trace here.)
COPY --from=build --chown=node:node /out/cache /cache
USER node
VOLUME /cache
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# The service drains on SIGTERM (at most 10 s) and exits 0; give it that long (docker stop -t 15).
STOPSIGNAL SIGTERM
CMD ["node", "dist/server.js"]
