{"algorithm": "ed25519", "key_id": "d9b5fede38d23312", "signature": "g1O4ZhvalREwvRQCYzw3dgRf5IhfS2Cnn2ZtumkZFlIHRSO3qEj2BmVRljM4XAOLBGNtp4g+xPNFyuUEjjD+Dg=="}
