"""Write a docker-archive tarball (what `docker save` writes) holding one static binary as its
entrypoint: enough for the pod sandbox ("pause") image, since no image can be pulled here.
usage: mkimage.py BINARY TAG OUT.tar"""
import hashlib
import io
import json
import sys
import tarfile


def layer_of(binary: str) -> bytes:
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tar.gettarinfo(binary, arcname="pause")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        info.mode = 0o755
        with open(binary, "rb") as fh:
            tar.addfile(info, fh)
    return layer.getvalue()


def add(tar: tarfile.TarFile, arcname: str, blob: bytes) -> None:
    info = tarfile.TarInfo(arcname)
    info.size = len(blob)
    tar.addfile(info, io.BytesIO(blob))


def main(binary: str, tag: str, out: str) -> None:
    data = layer_of(binary)
    diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Entrypoint": ["/pause"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}},
                        sort_keys=True).encode()
    name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = [{"Config": name, "RepoTags": [tag], "Layers": ["layer.tar"]}]
    with tarfile.open(out, "w") as tar:
        add(tar, "layer.tar", data)
        add(tar, name, config)
        add(tar, "manifest.json", json.dumps(manifest).encode())
    print(out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
