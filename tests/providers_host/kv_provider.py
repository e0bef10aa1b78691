"""A key-value provider for the `test:kv/store` interface (resource `bucket`)."""

from trellis.providers.sdk import Provider, run

kv = Provider("kvmem")
DATA: dict[str, dict[str, str]] = {}


@kv.export("test:kv/store", "open")
def open_bucket(identifier: str, **kwargs: object) -> dict:
    if identifier == "forbidden":
        return {"err": {"access-denied": None}}
    DATA.setdefault(identifier, {})
    return {"ok": identifier}  # the handle token: meaningful to every instance


@kv.export("test:kv/store", "bucket.get")
def get(bucket: str, key: str, **kwargs: object) -> dict:
    return {"ok": DATA.get(bucket, {}).get(key)}


@kv.export("test:kv/store", "bucket.set")
def set_(bucket: str, key: str, value: str, **kwargs: object) -> dict:
    DATA.setdefault(bucket, {})[key] = value
    return {"ok": None}


if __name__ == "__main__":
    run(kv)
