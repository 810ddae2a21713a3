# The control plane as a container (docker compose --profile ha runs two of these). Node 22 LTS,
# the project's own install (npm ci), started as `npm run cp`. Envoy is not needed in here, nor
# Rust: a Rust filter (Cargo.toml) then fails to build with that reason, the others build.
FROM node:22-bookworm-slim
WORKDIR /app
COPY . .
RUN npm ci && rm -rf /root/.npm
EXPOSE 18000 18080 19000
CMD ["npm", "run", "cp"]
