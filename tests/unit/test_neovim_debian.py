"""The Debian index reading behind the Neovim 0.12 test binary (tests/neovim_debian.py), on strings."""

import pytest

from tests import neovim_debian

INDEX = """Package: neovim
Version: 0.12.4-1
Depends: neovim-runtime (= 0.12.4-1), libc6 (>= 2.42), libluajit-5.1-2 (>= 2.0.4) | libluajit-5.1-2 (>= 2.1.0+openresty), lua-luv:any (>= 1.51.0-1)
Filename: pool/main/n/neovim/neovim_0.12.4-1_amd64.deb
SHA256: aa
Description: heavily refactored vim fork
 continued description: with a colon

Package: neovim-runtime
Version: 0.12.4-1
Filename: pool/main/n/neovim/neovim-runtime_0.12.4-1_all.deb

Package: libc6
Version: 2.43-7
Depends: libgcc-s1
Filename: pool/main/g/glibc/libc6_2.43-7_amd64.deb

Package: libgcc-s1
Version: 16.2.0-4
Depends: libc6 (>= 2.35)

Package: libluajit-5.1-2
Version: 2.1.0

Package: lua-luv
Version: 1.51.0-1-1+b1
Depends: libc6 (>= 2.38)

Package: libc6
Version: 2.42-1
"""


def test_stanzas_read_fields_and_keep_the_first_of_a_name():
    index = neovim_debian._stanzas(INDEX)
    assert index["neovim"]["Filename"] == "pool/main/n/neovim/neovim_0.12.4-1_amd64.deb"
    assert index["neovim"]["Description"] == "heavily refactored vim fork"  # continuation lines are not fields
    assert index["libc6"]["Version"] == "2.43-7"


def test_closure_follows_depends_by_their_first_alternative_once_each():
    names = [s["Package"] for s in neovim_debian._closure(neovim_debian._stanzas(INDEX))]
    assert sorted(names) == ["libc6", "libgcc-s1", "libluajit-5.1-2", "lua-luv", "neovim", "neovim-runtime"]
    assert len(names) == len(set(names))


def test_closure_says_which_package_is_missing():
    index = neovim_debian._stanzas(INDEX)
    del index["lua-luv"]
    with pytest.raises(RuntimeError, match="lua-luv"):
        neovim_debian._closure(index)


def test_members_of_an_ar_archive():
    def member(name: str, data: bytes) -> bytes:
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        return header + data + (b"\n" if len(data) % 2 else b"")

    deb = b"!<arch>\n" + member("debian-binary", b"2.0\n") + member("data.tar.xz", b"odd")
    deb += member("control.tar.xz", b"xy")
    assert neovim_debian._members(deb) == {"debian-binary": b"2.0\n", "data.tar.xz": b"odd", "control.tar.xz": b"xy"}


def test_release_lines_of_debian_and_neovim_versions():
    assert neovim_debian._release("0.12.4-1") == (0, 12)
    assert neovim_debian._release("1:0.13.0~rc1-2") == (0, 13)  # an epoch
    assert neovim_debian._release("0.12.4") == (0, 12)  # as `vim.version()` prints it
    assert neovim_debian._release("v0.12") is None
