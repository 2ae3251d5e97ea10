"""Musical descriptors computed from decoded audio (layer 2: plain arrays in, plain arrays out).

One module per concern; none of them knows about libraries, indexes or embedders.
"""
