# COPY --from an image (not a stage, not a named context) pulls it too.
FROM debian:bookworm-slim
COPY --from=busybox /bin/busybox /bin/busybox
