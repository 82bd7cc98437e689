import numpy as np
import onnx
import pytest

from sod2.errors import Sod2Error
from sod2.ir import DType


@pytest.mark.parametrize("dtype", list(DType))
def test_every_dtype_round_trips_through_its_onnx_code(dtype):
    assert DType.from_onnx(dtype.onnx) is dtype


@pytest.mark.parametrize("dtype", [d for d in DType if d is not DType.STRING])
def test_every_dtype_round_trips_through_numpy(dtype):
    assert DType.from_numpy(dtype.numpy) is dtype


def test_every_onnx_element_type_is_known():
    codes = {v for k, v in onnx.TensorProto.DataType.items() if k != "UNDEFINED"}
    assert codes == {d.onnx for d in DType}


def test_numpy_mapping_agrees_with_onnx_helper():
    for dtype in DType:
        assert dtype.numpy == onnx.helper.tensor_dtype_to_np_dtype(dtype.onnx)


def test_strings_map_to_object_arrays():
    assert DType.from_numpy(np.array(["a"]).dtype) is DType.STRING
    assert DType.STRING.numpy == np.dtype(object)


def test_unknown_onnx_code_is_a_clear_error():
    with pytest.raises(Sod2Error, match="unknown ONNX element type code 999"):
        DType.from_onnx(999)


def test_bits_of_packed_types():
    assert DType.INT4.bits == 4
    assert DType.FLOAT32.bits == 32
    assert DType.BFLOAT16.bits == 16


def test_categories():
    assert DType.BFLOAT16.is_float and DType.FLOAT8E4M3FN.is_float
    assert DType.UINT8.is_integer and not DType.UINT8.is_signed
    assert not DType.BOOL.is_integer
    assert str(DType.FLOAT32) == "float32"
