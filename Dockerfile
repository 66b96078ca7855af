# Build: docker build -t spengler --build-arg VERSION=$(cat VERSION) .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=0.0.0
ARG REVISION=unknown
RUN CGO_ENABLED=0 go build -trimpath -o /out/spengler \
    -ldflags "-s -w \
      -X github.com/prometheus/common/version.Version=${VERSION} \
      -X github.com/prometheus/common/version.Revision=${REVISION} \
      -X github.com/prometheus/common/version.BuildUser=docker \
      -X github.com/prometheus/common/version.Branch=docker" \
    .

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="spengler" \
      org.opencontainers.image.description="Prometheus exporter that proves database replication works end to end"
COPY --from=build /out/spengler /bin/spengler
EXPOSE 8442
USER nonroot:nonroot
ENTRYPOINT ["/bin/spengler"]
CMD ["--config.file=/etc/spengler/spengler.yml"]
