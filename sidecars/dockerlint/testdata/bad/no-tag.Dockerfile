# FROM with no tag pulls whatever "latest" is today.
FROM debian
