# One image for every bevygap service; the subcommand picks the service:
#   docker run IMAGE matchmaker --app-name … | httpd | webhook-sink | edgegap-sim | dev
# Build: docker build -t bevygap-go .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/bevygap ./cmd/bevygap

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bevygap /usr/local/bin/bevygap
USER nonroot:nonroot
EXPOSE 3000 3001
ENTRYPOINT ["/usr/local/bin/bevygap"]
CMD ["help"]
