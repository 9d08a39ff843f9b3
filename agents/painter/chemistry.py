"""Molecules drawn by RDKit from SMILES: 2D coordinates from RDKit's depictor, the drawing from
its Cairo drawer (its own bundled font), pasted under the title.

A SMILES is model-written text: RDKit reads it with its log silenced, and what it cannot read, or
a molecule too large to read in the picture, is refused as a SpecError naming the field.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageDraw

from cadsynth.specs import MAX_ATOMS, Molecule, SpecError


def molecule(smiles: str) -> Any:
    """RDKit's molecule for the SMILES, or SpecError saying why not."""
    from rdkit import Chem, rdBase

    rdBase.DisableLog("rdApp.*")  # a bad SMILES is refused below; RDKit's own complaint would go to stderr
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise SpecError(f"smiles: {smiles[:40]!r} is not a SMILES RDKit can read; write a valid SMILES, e.g. 'CCO'")
    if mol.GetNumAtoms() > MAX_ATOMS:
        raise SpecError(f"smiles: {mol.GetNumAtoms()} heavy atoms is too many to draw legibly (at most {MAX_ATOMS})")
    return mol


def draw_molecule(img: Image.Image, spec: Molecule) -> None:
    from rdkit.Chem import rdDepictor
    from rdkit.Chem.Draw import rdMolDraw2D

    from cadsynth.agents.painter.render import _base_size, _fit, _measure, _put, _title

    mol = molecule(spec.smiles)
    draw = ImageDraw.Draw(img)
    base = _base_size(spec.width, spec.height)
    pad = max(3, base // 2)
    top = _title(draw, spec, base)
    bottom = spec.height
    if spec.name:
        font, _ = _fit([spec.name], spec.width - 2 * pad, base)
        _put(draw, (spec.width / 2, spec.height - pad), spec.name, font, "mb")
        bottom -= _measure("Ag", font)[1] + 2 * pad
    # RDKit's own depictor: CoordGen took minutes on a 56-atom ring (a SMILES within the bounds).
    rdDepictor.SetPreferCoordGen(False)
    rdDepictor.Compute2DCoords(mol)
    drawer = rdMolDraw2D.MolDraw2DCairo(spec.width, max(16, bottom - top))
    options: Any = drawer.drawOptions()
    options.addAtomIndices = False
    options.fixedFontSize = -1
    options.minFontSize = max(8, base - 2)
    options.clearBackground = True
    options.rotate = spec.rotation
    if spec.atom_numbers:
        for atom in mol.GetAtoms():
            atom.SetProp("atomNote", str(atom.GetIdx() + 1))
    drawer.DrawMolecule(mol)
    drawer.FinishDrawing()
    img.paste(Image.open(io.BytesIO(drawer.GetDrawingText())).convert("RGB"), (0, top))
