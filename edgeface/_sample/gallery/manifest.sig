{"algorithm": "ed25519", "key_id": "55eb3c26689e7abd", "signature": "P3/sAr6fwrxMoRvPczDy0Lbuv/QeTDXjWkBlx3vuueQXuZbZMp0N8Bwd4Jy8fc6uEUamw2m46DvBpkOtv1eFCw=="}
