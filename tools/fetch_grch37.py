"""Fetch the human GRCh37 data of ``bench/quality_human.py`` from Debian example packages.

    python tools/fetch_grch37.py                                  # apt-get download into ~/.cache/hnet-seq/grch37
    python tools/fetch_grch37.py --debs /work/cache/debs          # use .debs already downloaded
    python tools/fetch_grch37.py --device-dir .data/human         # + copy what a GPU run reads (< 50 MiB)

Steps, each skipped when its output is already there and verifies (a second run only checks):
``apt-get download PACKAGE`` (or a ``.deb`` from ``--debs``) into ``CACHE/debs``, ``dpkg -x``
into ``CACHE/x``, sha256 of every file used (the sums of ``../shared/data/README.md``), then
bgzip + faidx of the FASTAs (chrX ships as plain gzip; chr20's shipped index is rebuilt so that
``.fai``/``.gzi`` always belong to the file beside them).  ``--device-dir`` copies chr20 and chrX
(bgzip + ``.fai`` + ``.gzi``), the chr22 EPO alignment, the 1000 Genomes chr22 VCF and the 97
labelled SNVs: what ``bench/quality_human.py --data-dir`` reads.

Another GRCh37/GRCh38 FASTA instead: see ``bench/quality_human.py --help`` (``--chr20``,
``--chrx`` and friends name the files directly).
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNVS = REPO.parent / "shared" / "data" / "human" / "gpn_clinvar_gnomad_grch37_chr20_chrX.vcf"
# name in the device folder: (package, path inside it, sha256 of that file)
FILES = {
    "chr20.fa.gz": ("vt-examples", "usr/share/doc/vt/examples/ref/20.fa.gz",
                    "83c80b3fb23822ff0a66f26306e46f5db3c83d48fcff68bcddc353a3d8ef581b"),
    "chrX_1-70Mb.fa.gz": ("smalt-examples", "usr/share/doc/smalt/test/data/hs37chrXtrunc.fa.gz",
                          "01fe793d0b77f91fa9d2edb8b269d9bc480cf71df469dce4be6e45bec25c749a"),
    "chr22_epo_primates.maf.gz": ("maffilter-examples", "usr/share/doc/maffilter/examples/Gorilla/"
                                  "Compara.epo_5_catarrhini_hsap-projected.chr22.subset.nogap.cleaned_aln.maf.gz",
                                  "f0b90e62f4a1e640c066734bdc9ff60717f1b9815c962e3ce71171d75d396c41"),
    "chr22_1000g.vcf.gz": ("r-bioc-variantannotation", "usr/lib/R/site-library/VariantAnnotation/extdata/chr22.vcf.gz",
                           "5f64f819420f4bc1d99896b9a16f4c7ce57312030d6f1ae4e53bc9366ab3e749"),
}
FASTAS = ("chr20.fa.gz", "chrX_1-70Mb.fa.gz")
DEVICE_LIMIT = 50 * 2 ** 20


def fail(message: str) -> None:
    print(f"fetch_grch37: {message}", file=sys.stderr)
    raise SystemExit(2)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def get_deb(package: str, debs: Path, local: Path | None) -> Path:
    """``CACHE/debs/PACKAGE_*.deb``: copied from ``local`` or fetched with ``apt-get download``."""
    found = sorted(debs.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    debs.mkdir(parents=True, exist_ok=True)
    if local is not None:
        src = sorted(local.glob(f"{package}_*.deb"))
        if not src:
            fail(f"--debs {local}: no {package}_*.deb there")
        shutil.copy2(src[-1], debs / (src[-1].name + ".tmp"))
        (debs / (src[-1].name + ".tmp")).replace(debs / src[-1].name)
        return debs / src[-1].name
    print(f"apt-get download {package}", flush=True)
    if subprocess.run(["apt-get", "download", package], cwd=debs).returncode != 0:
        fail(f"apt-get download {package} failed (run apt-get update first, or pass --debs DIR)")
    return get_deb(package, debs, None)


def extract(name: str, cache: Path, local: Path | None) -> Path:
    """The file ``name`` stands for, extracted into ``CACHE/x`` and checked by its sha256."""
    package, inner, digest = FILES[name]
    path = cache / "x" / inner
    if not path.exists():
        deb = get_deb(package, cache / "debs", local)
        tmp = cache / f"x.{package}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        if subprocess.run(["dpkg", "-x", str(deb), str(tmp)]).returncode != 0:
            fail(f"{deb}: dpkg -x failed")
        if not (tmp / inner).exists():
            fail(f"{deb}: has no {inner}")
        path.parent.mkdir(parents=True, exist_ok=True)
        (tmp / inner).replace(path)
        shutil.rmtree(tmp)
    if sha256(path) != digest:
        fail(f"{path}: sha256 {sha256(path)} is not the expected {digest} (delete it to fetch again)")
    return path


def bgzip_indexed(src: Path, dest: Path) -> Path:
    """``dest``: ``src`` re-compressed with bgzip, with ``.fai`` and ``.gzi`` (pysam)."""
    import pysam

    if not (dest.exists() and Path(f"{dest}.fai").exists() and Path(f"{dest}.gzi").exists()):
        tmp = dest.with_name(dest.name + ".tmp")
        plain = dest.with_name(dest.name + ".plain.tmp")
        subprocess.run(f"gzip -dc {src} > {plain}", shell=True, check=True)
        pysam.tabix_compress(str(plain), str(tmp), force=True)
        plain.unlink()
        tmp.replace(dest)
        pysam.faidx(str(dest))
    pysam.FastaFile(str(dest)).close()  # the index opens: file and index belong together
    return dest


def prepare(cache: Path, local: Path | None) -> dict[str, Path]:
    """Every file of :data:`FILES`, FASTAs as bgzip + index, in ``CACHE/ready``."""
    ready = cache / "ready"
    ready.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in FILES:
        src = extract(name, cache, local)
        if name in FASTAS:
            out[name] = bgzip_indexed(src, ready / name)
        else:
            out[name] = src
        print(f"ok  {name}  ({out[name].stat().st_size / 2 ** 20:.1f} MiB)", flush=True)
    return out


def device_copy(files: dict[str, Path], dest: Path, snvs: Path) -> None:
    """Copy what a GPU run reads into ``dest`` (each file only when missing or of another size)."""
    items = [(src, name) for name, src in files.items()]
    items += [(Path(f"{files[n]}.{ext}"), f"{n}.{ext}") for n in FASTAS for ext in ("fai", "gzi")]
    if not snvs.is_file():
        fail(f"--snvs {snvs}: no such file")
    items.append((snvs, snvs.name))
    total = sum(src.stat().st_size for src, _ in items)
    if total > DEVICE_LIMIT:
        fail(f"--device-dir: {total / 2 ** 20:.1f} MiB would exceed {DEVICE_LIMIT / 2 ** 20:.0f} MiB")
    dest.mkdir(parents=True, exist_ok=True)
    for src, name in items:
        target = dest / name
        if not target.exists() or target.stat().st_size != src.stat().st_size:
            shutil.copy2(src, dest / (name + ".tmp"))
            (dest / (name + ".tmp")).replace(target)
    print(f"{dest}: {len(items)} files, {total / 2 ** 20:.1f} MiB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "hnet-seq" / "grch37")
    parser.add_argument("--debs", type=Path, help="folder holding the four .debs already (no apt-get download)")
    parser.add_argument("--device-dir", type=Path, help="copy what a GPU run of bench/quality_human.py reads here")
    parser.add_argument("--snvs", type=Path, default=SNVS, help="the 97 labelled SNVs (default: %(default)s)")
    args = parser.parse_args()
    if args.debs is not None and not args.debs.is_dir():
        fail(f"--debs {args.debs}: not a folder")
    files = prepare(args.cache, args.debs)
    if args.device_dir is not None:
        device_copy(files, args.device_dir, args.snvs)


if __name__ == "__main__":
    main()
