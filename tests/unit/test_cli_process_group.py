"""A CLI command leaves the torchrun process group it ran in, so no rank is left to tear it down at exit."""
from __future__ import annotations


def test_a_command_leaves_the_process_group_it_ran_in(tmp_path):
    import torch.distributed as dist

    from hnet_seq.cli.main import user_errors_as_one_line

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    seen = []

    @user_errors_as_one_line
    def command() -> None:
        seen.append(dist.is_initialized())

    try:
        command()
        assert seen == [True] and not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
