"""Interning of frozen constants across compiled graphs (completer/engines/torch/frozen_constants.py)."""

import torch
from torch._inductor.graph import GraphLowering

from completer.engines.torch import frozen_constants as shared_constants
from completer.engines.torch.frozen_constants import intern, shared_frozen_constants


def test_equal_constants_become_one_tensor_and_others_stay_apart():
    hook = GraphLowering.allocate_non_dup_const_name
    with shared_frozen_constants() as sharing:
        assert GraphLowering.allocate_non_dup_const_name is not hook  # lowering now interns
        packed = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
        assert intern(packed) is packed
        assert intern(packed.clone()) is packed  # same values, shape, strides: the first copy
        assert sharing.reused == 1 and sharing.reused_bytes == 24 * 4
        other_values = packed.clone()
        other_values[1, 2, 3] = -1.0
        assert intern(other_values) is other_values
        other_strides = packed.transpose(0, 1).contiguous().transpose(0, 1)  # equal values, other layout
        assert torch.equal(other_strides, packed) and intern(other_strides) is other_strides
        other_dtype = packed.to(torch.bfloat16)
        assert intern(other_dtype) is other_dtype
        assert sharing.reused == 1
    assert GraphLowering.allocate_non_dup_const_name is hook  # restored
    assert shared_constants._seen == {}  # dropped autotuning candidates are not kept alive
    assert intern(packed.clone()) is not packed and shared_constants._seen == {}  # no interning outside


def test_nested_contexts_keep_the_hook_until_the_last_closes():
    hook = GraphLowering.allocate_non_dup_const_name
    with shared_frozen_constants() as outer:
        with shared_frozen_constants() as inner:
            a = torch.ones(3)
            intern(a)
            assert intern(torch.ones(3)) is a
        assert GraphLowering.allocate_non_dup_const_name is not hook
        assert intern(torch.ones(3)) is a
        assert (outer.reused, inner.reused) == (2, 1)
    assert GraphLowering.allocate_non_dup_const_name is hook
