{"algorithm": "ed25519", "key_id": "248d82473eeb9f73", "signature": "vTGW4kyJZCqf1L0Xpsrm9Q2JkzxPEA3o1ENtt9OD2mTV+JG98CGEFiMFImPB3oE1i5fxyMbXHBEXPkUue/5PAw=="}
