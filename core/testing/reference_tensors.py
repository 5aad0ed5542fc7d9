"""The writer side of core/testing/reference_tensors.h, for reference scripts.

A reference script (run by RunReferenceTensors as `/usr/bin/python3 SCRIPT
OUT_FILE`) computes named tensors and hands them to `put`; `run` checks the
arguments and writes OUT_FILE, one tensor a line:
  name ndim size_0 ... size_{ndim-1} value_0 value_1 ...
values in row-major order, as float64 repr (exact round trip).

The cc_library //core/testing:reference_tensors carries this file, so every
test using it finds it in its runfiles next to the scripts:

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                    "..", "..", "core", "testing"))
    import reference_tensors
    torch = reference_tensors.import_torch("my_reference.py")  # float64 default
    ...
    if __name__ == "__main__":
        reference_tensors.run(main, __doc__)   # main(put)
"""

import sys


def import_torch(script):
    """torch with float64 as the default dtype; exits naming `script` and the
    interpreter when it cannot be imported (the C++ test prints that line)."""
    try:
        import torch
    except ImportError as e:
        sys.exit("%s: cannot import torch with %s: %s" % (script, sys.executable, e))
    torch.set_default_dtype(torch.float64)
    return torch


def line(name, t):
    """One tensor (or number) as a line of the format."""
    import torch
    t = torch.as_tensor(t).detach().to(torch.float64).contiguous()
    return " ".join([name, str(t.dim())] + [str(s) for s in t.shape] +
                    [repr(float(v)) for v in t.flatten().tolist()])


def run(compute, usage):
    """Calls compute(put) and writes what it put to sys.argv[1]."""
    if len(sys.argv) != 2:
        sys.exit(usage)
    lines = []
    compute(lambda name, t: lines.append(line(name, t)))
    with open(sys.argv[1], "w") as out:
        out.write("".join(text + "\n" for text in lines))
