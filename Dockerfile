# redrive: build in the Rust image, run as a non-root user in a distroless
# image that holds only the C runtime, the CA bundle and the binary.
#   docker build --build-arg REDRIVE_GIT_COMMIT=$(git rev-parse --short HEAD) -t redrive .
#   docker run -p 8080:8080 -v redrive-data:/data redrive

FROM rust:1-bookworm AS build
WORKDIR /src
# The build context has no .git (see .dockerignore); the commit comes in here.
ARG REDRIVE_GIT_COMMIT=unknown
ENV REDRIVE_GIT_COMMIT=${REDRIVE_GIT_COMMIT}
COPY . .
RUN cargo build --release --locked --bin redrive \
 && strip target/release/redrive \
 && mkdir /data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/redrive /usr/local/bin/redrive
# An empty data directory owned by the runtime user, so a fresh named
# volume mounted here is writable.
COPY --from=build --chown=65532:65532 /data /data
USER 65532:65532
ENV REDRIVE_LISTEN=0.0.0.0:8080 \
    REDRIVE_DATA_DIR=/data \
    REDRIVE_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8080
# SIGTERM drains in-flight pushes (30s by default): give `docker stop` and
# Kubernetes' terminationGracePeriodSeconds more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/redrive"]
CMD ["serve"]
