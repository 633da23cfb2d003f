"""Rebuild this folder from the files of ``tools/fetch_grch37.py --device-dir DIR`` (see README.md).

    python tests/data/human_excerpt/make_excerpt.py DIR
"""
import gzip
import shutil
import sys
from pathlib import Path

import pysam

HERE = Path(__file__).resolve().parent
FLANK = 400  # real bases kept on each side of every labelled SNV
REGIONS = {"20": [(0, 160_000)],  # the p-telomere N gap (60 kb) and its edge
           "X": [(2_700_000, 2_800_000), (58_000_000, 58_050_000),  # training
                 (61_950_000, 62_060_000)]}  # held out: the end of the centromere gap and its edge
MAF_RANGE = (50_300_000, 50_360_000)  # the start of the 1000 Genomes excerpt's span


def fasta(src: Path, contig: str, snvs: list[int], dest: Path) -> None:
    with pysam.FastaFile(str(src)) as fa:
        seq = bytearray(b"N" * fa.get_reference_length(contig))
        for a, b in REGIONS[contig] + [(p - 1 - FLANK, p + FLANK) for p in snvs]:
            seq[a:b] = fa.fetch(contig, a, b).encode()
    plain = dest.with_suffix("")
    plain.write_text(f">{contig}\n" + "\n".join(seq[i:i + 60].decode() for i in range(0, len(seq), 60)) + "\n")
    pysam.tabix_compress(str(plain), str(dest), force=True)
    plain.unlink()
    pysam.faidx(str(dest))


def main() -> None:
    src = Path(sys.argv[1])
    snv_file = src / "gpn_clinvar_gnomad_grch37_chr20_chrX.vcf"
    shutil.copy(snv_file, HERE / snv_file.name)
    snvs = {"20": [], "X": []}
    for line in snv_file.read_text().splitlines():
        if not line.startswith("#"):
            chrom, pos = line.split("\t")[:2]
            snvs[chrom].append(int(pos))
    fasta(src / "chr20.fa.gz", "20", snvs["20"], HERE / "chr20.fa.gz")
    fasta(src / "chrX_1-70Mb.fa.gz", "X", snvs["X"], HERE / "chrX_1-70Mb.fa.gz")
    with gzip.open(src / "chr22_epo_primates.maf.gz", "rt") as f, gzip.open(HERE / "chr22_epo_primates.maf.gz", "wt") as out:
        blocks = f.read().split("\na\n")
        out.write(blocks[0].split("\n")[0] + "\n\n")
        for b in blocks[1:]:
            start = int(b.split("\n")[0].split()[2])
            if MAF_RANGE[0] <= start < MAF_RANGE[1]:
                out.write("a\n" + b.rstrip("\n") + "\n\n")
    with gzip.open(src / "chr22_1000g.vcf.gz", "rt") as f, open(HERE / "chr22_1000g.vcf", "w") as out:
        for line in f:
            if line.startswith("#") or MAF_RANGE[0] <= int(line.split("\t", 2)[1]) < MAF_RANGE[1] + 20_000:
                out.write("\t".join(line.rstrip("\n").split("\t")[:8]) + "\n" if not line.startswith("##") else line)
    pysam.tabix_compress(str(HERE / "chr22_1000g.vcf"), str(HERE / "chr22_1000g.vcf.gz"), force=True)
    (HERE / "chr22_1000g.vcf").unlink()


if __name__ == "__main__":
    main()
