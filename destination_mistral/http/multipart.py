"""The multipart/form-data body of a file upload (POST /v1/files), built once as bytes so that a
retry sends exactly the same upload."""

from __future__ import annotations

import uuid


def file_upload_body(filename: str, content: bytes, purpose: str) -> tuple[bytes, str]:
    """(body, content type) of an upload of `content` as `filename` for `purpose`."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n{purpose}\r\n'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/jsonl\r\n\r\n".encode(),
        content,
        f"\r\n--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
