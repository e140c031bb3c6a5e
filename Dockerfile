# Raftmail's container image: the static binary and nothing else.
#
#   make build                  # CGO_ENABLED=0: bin/raftmail runs FROM scratch
#   docker build -t raftmail .
#
# The image has no shell: run the CLI with `docker exec NODE /raftmail ...`.
# deploy/docker-compose.yml runs three nodes on one host from this image;
# the chaos suite's Docker backend builds it too (chaos/launcher_docker.go
# keeps a copy of this file, and a test checks that the two agree).
FROM scratch
COPY bin/raftmail /raftmail
# The node's data: keys, Raft log, Pebble store, mail blobs.
ENV RAFTMAIL_DATA_DIR=/data
VOLUME ["/data"]
# SMTP MX, submissions, submission, IMAP, IMAPS, POP3, POP3S
EXPOSE 25 465 587 143 993 110 995
# gossip (TCP and UDP), cluster (Raft and RPC over mutual TLS), admin API
EXPOSE 7946/tcp 7946/udp 7947 7948
ENTRYPOINT ["/raftmail"]
CMD ["serve"]
