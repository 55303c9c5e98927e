"""Config building blocks shared by the experiment configs in `configs/*.py`.

`base` holds the skeleton with every default, variant parsing and `build_spec`; `paper` the released
code's recipe for AVE, MIT-MUSIC and Kinetics-Sounds. The runnable configs stay in the repository's
`configs/` folder (`--config=configs/<name>.py`), each a thin `get_config(arg)` over these.
"""
