"""Field tables of protobuf message descriptors, for comparing two copies of a .proto."""


def fields(md, prefix: str = "") -> dict[str, list]:
    """name (nested as Outer.name) -> [number, type, repeated, message type]."""
    out = {f"{prefix}{f.name}": [f.number, f.type, f.is_repeated, f.message_type.full_name if f.message_type else ""]
           for f in md.fields}
    for n in md.nested_types:
        out.update(fields(n, f"{prefix}{n.name}."))
    return out
