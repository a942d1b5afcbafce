"tools/check_numbers.py: how printed numbers are read and compared (no kernel: the notebooks are built here)."
import sys
from pathlib import Path
import nbformat
from nbformat.v4 import new_notebook, new_code_cell, new_output

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'tools'))
import check_numbers as cn

def nb(*cells):
    "A notebook whose code cells (id, printed text) carry those stdout outputs."
    out = new_notebook()
    for cid, text in cells:
        c = new_code_cell('print()', id=cid)
        c.outputs = [new_output('stream', name='stdout', text=text)]
        out.cells.append(c)
    return out

def test_numbers_are_read_with_their_precision():
    assert cn.numbers('W2 0.232, floor 0.123; 38,746,640 parameters; 8.4e-05 nats; mean (1.26, -0.01)') == [
        (0.232, 3), (0.123, 3), (38746640.0, 0), (8.4e-05, 6), (1.26, 2), (-0.01, 2)]
    assert cn.numbers('x0 and W2 and dopri5 and nbs/02_toy.ipynb') == []       # numbers inside names are not numbers

def test_variable_numbers_are_not_read():
    text = ('2000 steps in 18.9 s; 2.22 ms per step (5.53x independent), ~29 GFLOP/s, 1-min load average 6.4, '
            'port 34827, cached in /root/.cache/flowmatch/digit_classifier-9c247d3129, median (median 15.41 s)')
    assert [v for v, _ in cn.numbers(text)] == [2000, 1]

def test_markdown_and_plain_results_count_stderr_does_not():
    c = new_code_cell('x', id='a')
    c.outputs = [new_output('stream', name='stderr', text='100%|##| 5/5 [00:01<00:00, 3.1it/s] 7'),
                 new_output('execute_result', data={'text/markdown': '| a | 1.5 |', 'text/plain': 'ignored 9'}, execution_count=1),
                 new_output('display_data', data={'text/plain': 'shown 2'})]
    assert cn.cell_text(c) == '| a | 1.5 |shown 2'

def test_compare_flags_changed_numbers_only():
    stored = nb(('a', 'PSNR 36.08 dB, after 12 steps 12.72 dB (349 s)'), ('b', 'share 0.91'), ('c', 'W2 0.232'))
    fresh = nb(('a', 'PSNR 33.52 dB, after 12 steps 12.72 dB (401 s)'), ('b', 'share 0.91'), ('c', 'W2 0.2351'))
    assert cn.compare(stored, fresh, name='07_vae.ipynb') == ['07_vae.ipynb [cell a]: 36.08 -> 33.52']
    assert cn.compare(stored, fresh, rtol=0.1) == []                             # a looser tolerance accepts it
    assert cn.compare(nb(('c', 'W2 0.232')), nb(('c', 'W2 0.2324')), rtol=0) == []   # the rounding of the printed digits

def test_compare_reports_missing_cells_and_changed_shapes():
    stored = nb(('a', 'loss 1.0 -> 0.5'), ('b', 'x 1'))
    fresh = nb(('a', 'loss 1.0'))
    found = cn.compare(stored, fresh, name='n')
    assert len(found) == 2 and found[0].startswith('n [cell a]: 2 numbers stored, 1 printed now')
    assert found[1] == 'n [cell b]: not in the rerun'

def test_variable_cells_are_skipped(monkeypatch):
    monkeypatch.setattr(cn, 'VARIABLE_CELLS', {('n.ipynb', 'a')})
    assert cn.compare(nb(('a', 'speed 1.0')), nb(('a', 'speed 3.0')), name='n.ipynb') == []

def test_command_line_with_an_executed_copy(tmp_path, capsys):
    stored, fresh = tmp_path / 'n.ipynb', tmp_path / 'run.ipynb'
    nbformat.write(nb(('a', 'W2 0.232 in 1.0 s')), stored)
    nbformat.write(nb(('a', 'W2 0.232 in 9.0 s')), fresh)
    assert cn.main([str(stored), '--fresh', str(fresh)]) == 0
    nbformat.write(nb(('a', 'W2 0.300 in 9.0 s')), fresh)
    assert cn.main([str(stored), '--fresh', str(fresh)]) == 1
    out = capsys.readouterr().out
    assert 'n.ipynb: 1 printed numbers, 1 differ' in out and '[cell a]: 0.232 -> 0.3' in out
