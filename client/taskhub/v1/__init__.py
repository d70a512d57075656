"""Generated gRPC stubs for taskhub.v1; made by scripts/generate_protos.py."""
