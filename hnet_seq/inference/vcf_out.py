"""Reading the input VCF/BCF and writing its annotated copy, so that htslib can neither abort
the process nor change a record it was given.

* Records are written as htslib formats them (``str(record)``) with the ``HNET_*`` INFO fields
  appended; pysam's ``VariantFile.write`` is not used, since it adds ``END`` to every record
  with a symbolic ALT (and cannot store the ``END`` of a record near position 10 billion).
* Header completion: the body is written first, the header last, from the reader's header
  once every record has been read.  htslib declares, while reading, every contig, FILTER,
  INFO and FORMAT a record uses but the input header omitted (``Description="Dummy"``, as
  ``bcftools`` writes them), so the output header declares everything its records use.
* A ``##hnet-seq=<...>`` line records the version, command, checkpoint, window, indel mode
  and strand averaging.
* ``.vcf.gz`` is bgzip-compressed and indexed (``.tbi``; ``.csi`` when a position exceeds
  TBI's 2^29 limit); ``.bcf`` is converted by bcftools (pysam) and indexed (``.csi``).  A
  BCF cannot hold positions of 2^31 or more: such a record is skipped with a reason.  An
  index that cannot be built (unsorted input) is reported, and no stale index is left.
"""
from __future__ import annotations

from pathlib import Path

from hnet_seq.errors import UserError
from hnet_seq.runtime.atomic import publish, temp_path_for

from .outputs import AtomicFile
from .variant_windows import Allele

TBI_MAX = 1 << 29
BCF_MAX = (1 << 31) - 1
INFO_FIELDS = (
    ("HNET_SCORE", "Float", "hnet-seq: log-likelihood(alt window) - log-likelihood(ref window), nats"),
    ("HNET_SITE_LLR", "Float", "hnet-seq: log-likelihood ratio over the allele bases, nats"),
    ("HNET_FLAGS", "String", "hnet-seq: ok, contig_edge, or why the allele was skipped"))


def _is_plain_gzip(path: Path) -> bool:
    """gzip but not BGZF (a BGZF block has the FEXTRA flag and a 'BC' subfield)."""
    with open(path, "rb") as f:
        head = f.read(18)
    return head[:2] == b"\x1f\x8b" and not (len(head) >= 14 and head[3] & 4 and head[12:14] == b"BC")


def open_vcf(path: str | Path):
    """A pysam reader for the ``vcf`` parameter's file, or a :class:`UserError` naming it."""
    import pysam

    path = Path(path)
    if not path.exists():
        raise UserError(f"vcf={path}: no such file", params=("vcf",))
    if path.is_dir():
        raise UserError(f"vcf={path}: is a directory", params=("vcf",))
    if _is_plain_gzip(path):
        raise UserError(f"vcf={path}: compressed with plain gzip, not bgzip; recompress it "
                        f"(gunzip -c {path} | bgzip > {path.stem}.bgz.vcf.gz) or give it uncompressed",
                        params=("vcf",))
    quiet = pysam.set_verbosity(0)  # htslib's own "could not retrieve index" noise
    try:
        return pysam.VariantFile(str(path))
    except (OSError, ValueError, NotImplementedError) as e:
        raise UserError(f"vcf={path}: cannot read VCF/BCF ({str(e).strip() or type(e).__name__})",
                        params=("vcf",)) from None
    finally:
        pysam.set_verbosity(quiet)


def _header_value(v) -> str:
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


class VcfAnnotator:
    """The input records, in order, with ``HNET_*`` INFO fields, published on :meth:`close`.

    ``vcf`` is the pysam reader the records come from (its header gains the ``HNET_*``
    declarations); ``provenance`` the key/values of the ``##hnet-seq`` line.
    """

    def __init__(self, vcf, path: str | Path, provenance: dict):
        self.path = Path(path)
        name = self.path.name.lower()
        self.kind = "bcf" if name.endswith(".bcf") else "vcf.gz" if name.endswith(".gz") else "vcf"
        self.header = vcf.header
        for key, typ, desc in INFO_FIELDS:
            if key in self.header.info:
                raise UserError(f"vcf: the input already has INFO/{key}; remove it before annotating",
                                params=("vcf",))
            self.header.info.add(key, "A", typ, desc)
        self.provenance = provenance
        self.max_pos = 0
        self.records = 0
        self.index: Path | None = None
        self.index_note = ""
        self._raw = _raw_records(vcf)
        self._body = AtomicFile(self.path)
        self._handle = open(self._body.tmp, "w")

    def write(self, rec, alleles: list[Allele]) -> None:
        """Append ``rec``; on a record that cannot be written, mark its alleles ``vcf_unwritable``."""
        end = int(rec.pos) + max(int(rec.rlen), 1) - 1
        raw = next(self._raw) if self._raw is not None else None
        if self.kind == "bcf" and end > BCF_MAX:
            return self._unwritable(alleles, f"position {rec.chrom}:{rec.pos} is beyond BCF's limit "
                                             f"({BCF_MAX}); write .vcf.gz instead")
        values = _info_values(rec, alleles)
        try:
            if raw is not None and raw.split("\t", 2)[:2] == [rec.chrom, str(rec.pos)]:
                line = _with_info(raw, values)
            else:  # BCF input: htslib's text form of the record
                for key, v in values.items():
                    rec.info[key] = v
                line = str(rec)
        except (ValueError, OSError, TypeError) as e:
            return self._unwritable(alleles, f"cannot write the record to --vcf-out "
                                             f"({str(e).strip() or type(e).__name__})")
        self._handle.write(line)
        self.max_pos = max(self.max_pos, end)
        self.records += 1

    @staticmethod
    def _unwritable(alleles: list[Allele], reason: str) -> None:
        for a in alleles:
            a.flags.append("vcf_unwritable")
            a.reason = f"{a.reason}; {reason}" if a.reason else reason

    def _header_text(self) -> str:
        fields = ",".join(f"{k}={_header_value(v)}" for k, v in self.provenance.items())
        lines = str(self.header).splitlines(keepends=True)
        return "".join(lines[:-1]) + f"##hnet-seq=<{fields}>\n" + lines[-1]

    def close(self) -> Path:
        import pysam

        self._handle.close()
        body = self._body.tmp
        out = temp_path_for(self.path)
        idx_ext = ".csi" if self.kind == "bcf" or self.max_pos >= TBI_MAX else ".tbi"
        idx_tmp = Path(str(out) + idx_ext)
        try:
            if self.kind == "vcf":
                self._assemble(open(out, "w"), body, False)
            elif self.kind == "vcf.gz":
                self._assemble(pysam.BGZFile(str(out), "w"), body, True)
                self._build_index(lambda: pysam.tabix_index(str(out), preset="vcf", force=True, index=str(idx_tmp),
                                                            csi=idx_ext == ".csi"))
            else:
                text = temp_path_for(self.path)
                try:
                    self._assemble(open(text, "w"), body, False)
                    try:
                        _bcftools("view", "--no-version", "-Ob", "-o", str(out), str(text))
                    except OSError as e:
                        raise UserError(f"vcf_out={self.path}: cannot convert to BCF ({e}); write .vcf.gz "
                                        "instead", params=("vcf_out",)) from None
                finally:
                    text.unlink(missing_ok=True)
                self._build_index(lambda: _bcftools("index", "-f", "-c", "-o", str(idx_tmp), str(out)))
            index = Path(str(self.path) + idx_ext)
            for stale in (Path(str(self.path) + ".tbi"), Path(str(self.path) + ".csi")):
                stale.unlink(missing_ok=True)
            publish(out, self.path)
            if idx_tmp.exists():
                self.index = publish(idx_tmp, index)
        except BaseException:
            out.unlink(missing_ok=True)
            idx_tmp.unlink(missing_ok=True)
            raise
        finally:
            body.unlink(missing_ok=True)
        return self.path

    def _assemble(self, handle, body: Path, binary: bool) -> None:
        """Header, then the body, into ``handle`` (closed afterwards)."""
        with handle, open(body) as src:
            head = self._header_text()
            handle.write(head.encode() if binary else head)
            for chunk in iter(lambda: src.read(1 << 20), ""):
                handle.write(chunk.encode() if binary else chunk)

    def _build_index(self, build) -> None:
        import pysam

        quiet = pysam.set_verbosity(0)  # the reason is reported once, in the summary line
        try:
            build()
        except (OSError, ValueError) as e:  # e.g. records out of order: the file is still valid
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            self.index_note = f"no index written ({why}; is the input sorted?)"
        finally:
            pysam.set_verbosity(quiet)

    def abort(self) -> None:
        try:
            self._handle.close()
        except OSError:
            pass
        self._body.abort()


def _raw_records(vcf):
    """The record lines of a text VCF as given (None for BCF), so that they are copied unchanged:
    htslib's own formatting would normalise floats and blank an INFO/END past 2^31."""
    import pysam

    if vcf.is_bcf:
        return None
    path = vcf.filename.decode() if isinstance(vcf.filename, bytes) else str(vcf.filename)
    handle = pysam.BGZFile(path, "r") if vcf.compression == "BGZF" else open(path, "rb")

    def lines():
        with handle:
            for line in handle:
                if line.strip() and not line.startswith(b"#"):
                    yield line.decode().rstrip("\r\n") + "\n"
        while True:  # records htslib read but the text did not show: fall back to its formatting
            yield None

    return lines()


def _info_values(rec, alleles: list[Allele]) -> dict:
    """The HNET_* INFO values of ``rec``, one per ALT (None: missing)."""
    if not rec.alts:
        return {}
    by_index = {a.index: a for a in alleles}
    n = len(rec.alts)
    return {"HNET_SCORE": tuple(_rounded(by_index[j].score) if j in by_index else None for j in range(n)),
            "HNET_SITE_LLR": tuple(_rounded(by_index[j].site_llr) if j in by_index else None for j in range(n)),
            "HNET_FLAGS": tuple(_flag(by_index.get(j)) for j in range(n))}


def _with_info(line: str, values: dict) -> str:
    """``line`` with ``values`` appended to its INFO column (column 8)."""
    if not values:
        return line
    cols = line.rstrip("\n").split("\t")
    if len(cols) < 8:
        raise ValueError(f"record line has {len(cols)} columns, expected at least 8")
    added = ";".join(f"{k}=" + ",".join("." if v is None else str(v) for v in vs) for k, vs in values.items())
    cols[7] = added if cols[7] in ("", ".") else f"{cols[7]};{added}"
    return "\t".join(cols) + "\n"


def _bcftools(*args: str) -> None:
    import pysam
    from pysam import bcftools

    try:
        getattr(bcftools, args[0])(*args[1:], catch_stdout=False)
    except pysam.utils.SamtoolsError as e:
        raise OSError(str(e)) from None


def _rounded(v):
    return None if v is None or v != v else float(round(v, 5))


def _flag(a: Allele | None) -> str:
    if a is None:
        return "."
    return "|".join(a.flags) if a.flags else "ok"
