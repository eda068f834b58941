# FROM with the moving tag "latest".
FROM debian:latest
