"""The offline demo (`hubtui demo`), all of it: a real Hugging Face checkpoint rebuilt from what installed
packages ship (`smollm2`, written by `checkpoint_writer`), and the pipeline that converts and smoke-tests it
(`run`). `hubtui.commands.demo` is only the click command around `run.run_demo`."""
