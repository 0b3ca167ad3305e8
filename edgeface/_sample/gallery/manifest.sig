{"algorithm": "ed25519", "key_id": "f06c0f9f20bb719d", "signature": "fFgIYlpmwyHMgpcolFs0arRg/PN8jIZY9o7DySiKYyCVhUqEZ2qsS9O4/bQO+3bHkoDAR1L0IjYt30QP1mkKDw=="}
