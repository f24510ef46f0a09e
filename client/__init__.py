"""Tributary's client: the `tributary` command for owners, trainers and anyone else.

Owners post jobs and read results; trainers train locally and submit model/data-card ids; both
keep content in a `client.storage` store (a local directory by default, or an IPFS node) whose
ids are the CIDs the backend verifies. See the README for the walkthroughs.
"""
