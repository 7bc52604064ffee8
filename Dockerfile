# Limiter node image, used by docker-compose.yml (generated from regions/ by npm run gen:regions).
# Configuration comes from the environment: LIMITER_NODE_ID, LIMITER_REGION, LIMITER_NATS,
# LIMITER_DATA, LIMITER_RULES, LIMITER_HOST, LIMITER_PORT (same meaning as the CLI flags of
# `regionlimit --node-id ID --region R --nats URL --data DIR --rules FILE --host H --port P`).

# Build stage: better-sqlite3 (and msgpackr-extract) compile from source when no prebuilt
# binary can be downloaded, so the toolchain lives here and not in the final image; the
# TypeScript sources compile to dist/ (tsc), then the dev dependencies are dropped.
FROM node:20-bookworm-slim AS deps
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY crdt ./crdt
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    LIMITER_HOST=0.0.0.0 \
    LIMITER_DATA=/data
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY . .
COPY --from=deps /app/dist ./dist
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
# Compiled JavaScript (dist/src/main.js is the package's `regionlimit` binary).
CMD ["node", "dist/src/main.js"]
