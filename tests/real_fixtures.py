"""Fixture trees that reproduce the real datasets' published layouts (headers, encodings,
folder names), with tiny stub images. Shared by the tests of benchmark/data/real/."""

from __future__ import annotations

import csv
import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from benchmark.data.real.chexpert import HEADER as CHEXPERT_HEADER
from benchmark.data.real.chexpert import LABEL_COLUMNS


def stub_image(path: Path, *, seed: int = 0, size: tuple[int, int] = (40, 32),
               mode: str = "L") -> Path:
    """A small JPEG/PNG (by suffix) with random content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)
    return path


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]],
              *, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if gz else open
    with opener(path, "wt", newline="") as f:  # type: ignore[operator]
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


# ------------------------------------------------------------------------------ CheXpert

#: (patient, study, view, sex, age, frontal/lateral, AP/PA, {label column: value})
CHEXPERT_TRAIN = [
    ("patient00001", 1, 1, "Female", "68", "Frontal", "AP",
     {"No Finding": "1.0", "Pneumothorax": "0.0", "Support Devices": "1.0"}),
    ("patient00002", 2, 1, "Female", "87", "Frontal", "AP",
     {"Cardiomegaly": "-1.0", "Pleural Effusion": "1.0"}),
    ("patient00002", 1, 1, "Female", "83", "Frontal", "AP",
     {"Lung Opacity": "1.0", "Fracture": "1.0", "Consolidation": "-1.0"}),
    ("patient00002", 1, 2, "Female", "83", "Lateral", "",
     {"Lung Opacity": "1.0", "Fracture": "1.0"}),
    ("patient00003", 1, 1, "Male", "41", "Frontal", "AP", {"Edema": "1.0"}),
    ("patient00004", 1, 1, "Female", "20", "Frontal", "PA", {"No Finding": "1.0"}),
    ("patient00004", 1, 2, "Female", "20", "Lateral", "", {"No Finding": "1.0"}),
    ("patient00005", 1, 1, "Male", "0", "Frontal", "PA", {"Pneumonia": "1.0"}),
    ("patient00006", 1, 1, "Unknown", "33", "Frontal", "AP", {"Atelectasis": "-1.0"}),
]
CHEXPERT_VALID = [
    ("patient64541", 1, 1, "Male", "73", "Frontal", "AP",
     {"No Finding": "0.0", "Cardiomegaly": "1.0", "Support Devices": "1.0"}),
    ("patient64542", 1, 1, "Male", "70", "Frontal", "PA", {"No Finding": "1.0"}),
]
CHEXPERT_DEMO = [  # PATIENT, GENDER, AGE_AT_CXR, PRIMARY_RACE, ETHNICITY
    ("patient00001", "Female", 68, "White, non-Hispanic", "Non-Hispanic/Non-Latino"),
    ("patient00002", "Female", 87, "Black or African American", "Non-Hispanic/Non-Latino"),
    ("patient00003", "Male", 41, "Asian - Historical Conv", "Unknown"),
    ("patient00004", "Female", 20, "Other, Hispanic", "Hispanic/Latino"),
    ("patient00005", "Male", 55, "Patient Refused", "Patient Refused"),
    ("patient64541", "Male", 73, "Pacific Islander, non-Hispanic", "Non-Hispanic/Non-Latino"),
]


def chexpert_rows(prefix: str, split: str, spec) -> list[list[str]]:
    out = []
    for pid, study, view, sex, age, fl, appa, labels in spec:
        kind = "frontal" if fl == "Frontal" else "lateral"
        path = f"{prefix}/{split}/{pid}/study{study}/view{view}_{kind}.jpg"
        out.append([path, sex, age, fl, appa, *(labels.get(c, "") for c in LABEL_COLUMNS)])
    return out


def make_chexpert(root: Path, *, prefix: str = "CheXpert-v1.0-small", demo: bool = True,
                  train=CHEXPERT_TRAIN, valid=CHEXPERT_VALID, images: bool = True) -> Path:
    """``root/<prefix>/{train,valid}.csv`` + images, ``root/CHEXPERT DEMO.xlsx``."""
    base = root / prefix
    for split, spec, name in (("train", train, "train.csv"), ("valid", valid, "valid.csv")):
        rows = chexpert_rows(prefix, split, spec)
        write_csv(base / name, CHEXPERT_HEADER, rows)
        if images:
            for i, r in enumerate(rows):
                stub_image(root / r[0], seed=i)
    if demo:
        pd.DataFrame(CHEXPERT_DEMO, columns=["PATIENT", "GENDER", "AGE_AT_CXR", "PRIMARY_RACE",
                                             "ETHNICITY"]).to_excel(
            root / "CHEXPERT DEMO.xlsx", index=False)
    return root


def chexpert_many(n_patients: int = 40, seed: int = 0) -> list:
    """A larger CheXpert train spec: every patient one frontal image of one of five findings."""
    rng = np.random.default_rng(seed)
    findings = ["No Finding", "Pneumonia", "Pleural Effusion", "Cardiomegaly", "Edema"]
    out = []
    for k in range(n_patients):
        f = findings[k % len(findings)]
        out.append((f"patient{k + 1:05d}", 1, 1, "Female" if rng.random() < 0.5 else "Male",
                    str(int(rng.integers(20, 90))), "Frontal", "AP", {f: "1.0"}))
    return out


# ------------------------------------------------------------------------------ MIMIC-CXR

MIMIC_META_HEADER = ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription",
                     "ViewPosition", "Rows", "Columns", "StudyDate", "StudyTime",
                     "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
                     "PatientOrientationCodeSequence_CodeMeaning"]
#: (dicom, subject, study, ViewPosition, StudyDate, split)
MIMIC_IMAGES = [
    ("d1", "10000032", "50414267", "PA", "21800506", "train"),
    ("d2", "10000032", "50414267", "LATERAL", "21800506", "train"),
    ("d3", "10000032", "53189527", "AP", "21800626", "train"),
    ("d4", "10000764", "57375967", "AP", "21321015", "validate"),
    ("d5", "11000011", "51029426", "PA", "21830909", "test"),
    ("d6", "12000012", "52000001", "AP", "21500101", "train"),
]
#: study -> {label column: value}
MIMIC_LABELS = {
    "50414267": {"No Finding": "1.0"},
    "53189527": {"Pleural Effusion": "1.0", "Edema": "-1.0"},
    "57375967": {"Cardiomegaly": "1.0", "Support Devices": "1.0"},
    "51029426": {"Pneumonia": "-1.0"},
    "52000001": {"Atelectasis": "1.0", "Lung Opacity": "1.0"},
}
#: subject_id, gender, anchor_age, anchor_year
MIMIC_PATIENTS = [("10000032", "F", "52", "2180"), ("10000764", "M", "86", "2132"),
                  ("11000011", "M", "40", "2180")]
#: subject_id, hadm_id, race string
MIMIC_ADMISSIONS = [("10000032", "1", "WHITE"), ("10000032", "2", "UNKNOWN"),
                    ("10000764", "3", "ASIAN - CHINESE"), ("10000764", "4", "WHITE"),
                    ("10000764", "5", "ASIAN"), ("11000011", "6", "HISPANIC/LATINO - PUERTO RICAN")]


def make_mimic(root: Path, *, mimic_iv_version: str = "2.2", cxr_version: str = "2.0.0",
               gz: bool = True) -> Path:
    """``root/mimic-cxr-jpg/<v>/`` csvs + files/, and ``root/mimiciv/<v>/{core|hosp}/``."""
    from benchmark.data.real.mimic_cxr import LABEL_COLUMNS

    cxr = root / "mimic-cxr-jpg" / cxr_version
    sfx = ".csv.gz" if gz else ".csv"
    meta = [[d, s, st, "CHEST (PA AND LAT)", v, "3056", "2544", date, "134504.000",
             "CHEST (PA AND LAT)", "postero-anterior", "Erect"]
            for d, s, st, v, date, _ in MIMIC_IMAGES]
    write_csv(cxr / f"mimic-cxr-2.0.0-metadata{sfx}", MIMIC_META_HEADER, meta, gz=gz)
    write_csv(cxr / f"mimic-cxr-2.0.0-split{sfx}", ["dicom_id", "study_id", "subject_id",
                                                    "split"],
              [[d, st, s, sp] for d, s, st, _, _, sp in MIMIC_IMAGES], gz=gz)
    subject_of = {st: s for _, s, st, _, _, _ in MIMIC_IMAGES}
    for labeler in ("chexpert", "negbio"):
        write_csv(cxr / f"mimic-cxr-2.0.0-{labeler}{sfx}",
                  ["subject_id", "study_id", *LABEL_COLUMNS],
                  [[subject_of[st], st, *(lab.get(c, "") for c in LABEL_COLUMNS)]
                   for st, lab in MIMIC_LABELS.items()], gz=gz)
    for i, (d, s, st, *_rest) in enumerate(MIMIC_IMAGES):
        stub_image(cxr / "files" / f"p{s[:2]}" / f"p{s}" / f"s{st}" / f"{d}.jpg", seed=i)
    module = "core" if mimic_iv_version.startswith("1") else "hosp"
    race_col = "ethnicity" if module == "core" else "race"
    iv = root / "mimiciv" / mimic_iv_version / module
    write_csv(iv / "patients.csv.gz", ["subject_id", "gender", "anchor_age", "anchor_year",
                                       "anchor_year_group", "dod"],
              [[*p, "2008 - 2010", ""] for p in MIMIC_PATIENTS], gz=True)
    write_csv(iv / "admissions.csv.gz", ["subject_id", "hadm_id", "admittime", "insurance",
                                         "language", "marital_status", race_col],
              [[s, h, "2180-05-06 22:23:00", "Other", "ENGLISH", "WIDOWED", r]
               for s, h, r in MIMIC_ADMISSIONS], gz=True)
    return root


# ------------------------------------------------------------------------------ Fitzpatrick17k

#: md5hash, fitzpatrick_scale, fitzpatrick_centaur, label, nine, three, qc, url, url_alphanum
FITZ_ROWS = [
    ("5e82a45bc5d78bd24ae9202d194423f8", "3", "3", "psoriasis", "inflammatory", "non-neoplastic",
     "", "https://www.dermaamin.com/site/images/clinical-pic/p/psoriasis/psoriasis1.jpg",
     "httpwwwdermaamincomsiteimagesclinicalpicppsoriasispsoriasis1jpg"),
    ("fa2911a9b13b6f8af79cb700937cc14f", "1", "1", "basal cell carcinoma", "malignant epidermal",
     "malignant", "1 Diagnostic", "http://atlasdermatologico.com.br/img?imageId=4335",
     "httpatlasdermatologicocombrimgimageId4335"),
    ("d2bac3c9e4499032ca8e9b07c7d3bc40", "6", "5", "lichen planus", "inflammatory",
     "non-neoplastic", "", "http://x/lp.jpg", "httpxlpjpg"),
    ("0844ae634f0e6e7ef1f73c2aeecbae0e", "-1", "2", "squamous cell carcinoma",
     "malignant epidermal", "malignant", "3 Wrongly labelled", "http://x/scc.jpg", "httpxsccjpg"),
    ("9a6f5d4e3c2b1a0f9e8d7c6b5a4f3e2d", "4", "4", "allergic contact dermatitis",
     "inflammatory", "non-neoplastic", "", "http://x/acd.jpg", "httpxacdjpg"),
    ("1111aaaa2222bbbb3333cccc4444dddd", "2", "2", "acne vulgaris", "inflammatory",
     "non-neoplastic", "", "http://x/acne.jpg", "httpxacnejpg"),
    ("2222bbbb3333cccc4444dddd5555eeee", "5", "5", "psoriasis", "inflammatory",
     "non-neoplastic", "", "http://dead/link.jpg", "httpdeadlinkjpg"),
]


def make_fitzpatrick(root: Path, *, old_header: bool = False, image_dir: str = "images"
                     ) -> Path:
    """``root/fitzpatrick17k.csv`` + images named each of the three ways users name them."""
    folder = root / image_dir if image_dir else root
    if old_header:
        header = ["", "md5hash", "fitzpatrick", "label", "nine_partition_label",
                  "three_partition_label", "qc", "url", "url_alphanum"]
        rows = [[i, r[0], r[1], *r[3:]] for i, r in enumerate(FITZ_ROWS)]
    else:
        header = ["md5hash", "fitzpatrick_scale", "fitzpatrick_centaur", "label",
                  "nine_partition_label", "three_partition_label", "qc", "url", "url_alphanum"]
        rows = [list(r) for r in FITZ_ROWS]
    write_csv(root / "fitzpatrick17k.csv", header, rows)
    names = [FITZ_ROWS[0][0] + ".jpg", FITZ_ROWS[1][0], FITZ_ROWS[2][8], FITZ_ROWS[3][0] + ".jpg",
             FITZ_ROWS[4][0] + ".jpg", FITZ_ROWS[5][0] + ".jpg"]  # the last row: no image
    for i, name in enumerate(names):
        p = stub_image(folder / f"tmp{i}.jpg", seed=i, mode="RGB")
        p.rename(folder / name)
    return root


# ------------------------------------------------------------------------------ OASIS

OASIS1_HEADER = ["ID", "M/F", "Hand", "Age", "Educ", "SES", "MMSE", "CDR", "eTIV", "nWBV",
                 "ASF", "Delay"]
#: ID, M/F, Age, CDR, n (averaged scans in the file name), disc
OASIS1_ROWS = [
    ("OAS1_0001_MR1", "F", "74", "0", 4, "disc1"),
    ("OAS1_0002_MR1", "F", "55", "N/A", 4, "disc1"),
    ("OAS1_0003_MR1", "F", "73", "0.5", 3, "disc1"),
    ("OAS1_0010_MR1", "M", "80", "1", 3, "disc2"),
    ("OAS1_0011_MR1", "M", "22", "", 4, "disc2"),
    ("OAS1_0001_MR2", "F", "74", "0", 4, "disc1"),
]


def analyze_volume(path: Path, *, seed: int, shape=(24, 28, 20), nifti_pair: bool = False
                   ) -> Path:
    """A small Analyze 7.5 (or NIfTI-1 pair) volume with a bright block in the anterior top."""
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    data = rng.integers(10, 200, (*shape, 1), dtype=np.int16)
    data[:, -4:, :, 0] = 1000  # anterior rows (high y) bright
    img = (nib.Nifti1Pair(data, np.diag([1.0, 1.0, 1.0, 1.0])) if nifti_pair
           else nib.AnalyzeImage(data, np.diag([-1.0, 1.0, 1.0, 1.0])))
    nib.save(img, str(path))
    return path


def make_oasis1(root: Path, *, table: str = "csv", nested: bool = False) -> Path:
    """``root/oasis_cross-sectional.csv`` (or .xlsx) and ``root/disc*/OAS1_xxxx_MR1/...``."""
    rows = [[sid, sex, "R", age, "2", "", "29", cdr, "1344", "0.743", "1.306",
             "N/A" if sid.endswith("MR1") else "0"]
            for sid, sex, age, cdr, _, _ in OASIS1_ROWS]
    if table == "csv":
        write_csv(root / "oasis_cross-sectional.csv", OASIS1_HEADER, rows)
    else:
        pd.DataFrame(rows, columns=OASIS1_HEADER).to_excel(
            root / "oasis_cross-sectional.xlsx", index=False)
    for i, (sid, _, _, _, n, disc) in enumerate(OASIS1_ROWS):
        if sid.endswith("MR2"):
            continue
        base = root / (f"oasis_cross-sectional_{disc}" if nested else "") / disc / sid
        t88 = base / "PROCESSED" / "MPRAGE" / "T88_111"
        for kind in ("masked_gfc", "gfc"):
            analyze_volume(t88 / f"{sid}_mpr_n{n}_anon_111_t88_{kind}.hdr", seed=i)
    return root


OASIS2_HEADER = ["Subject ID", "MRI ID", "Group", "Visit", "MR Delay", "M/F", "Hand", "Age",
                 "EDUC", "SES", "MMSE", "CDR", "eTIV", "nWBV", "ASF"]
OASIS2_ROWS = [  # Subject, MRI, Group, Visit, Delay, M/F, Age, CDR, part
    ("OAS2_0001", "OAS2_0001_MR1", "Nondemented", "1", "0", "M", "87", "0", 1),
    ("OAS2_0001", "OAS2_0001_MR2", "Nondemented", "2", "457", "M", "88", "0", 1),
    ("OAS2_0002", "OAS2_0002_MR1", "Demented", "1", "0", "M", "75", "0.5", 1),
    ("OAS2_0187", "OAS2_0187_MR1", "Converted", "1", "0", "F", "69", "0", 2),
    ("OAS2_0187", "OAS2_0187_MR3", "Converted", "3", "1500", "F", "73", "0.5", 2),
]


def make_oasis2(root: Path) -> Path:
    """``root/oasis_longitudinal_demographics.xlsx`` + ``OAS2_RAW_PART*/OAS2_xxxx_MRk/RAW/``."""
    rows = [[s, m, g, v, d, sex, "R", age, "14", "2", "27", cdr, "1987", "0.696", "0.883"]
            for s, m, g, v, d, sex, age, cdr, _ in OASIS2_ROWS]
    pd.DataFrame(rows, columns=OASIS2_HEADER).to_excel(
        root / "oasis_longitudinal_demographics.xlsx", index=False)
    for i, r in enumerate(OASIS2_ROWS):
        mri, part = r[1], r[8]
        for scan in (1, 2):
            analyze_volume(root / f"OAS2_RAW_PART{part}" / mri / "RAW" / f"mpr-{scan}.nifti.hdr",
                           seed=i * 10 + scan, nifti_pair=True, shape=(20, 24, 16))
    return root


# ------------------------------------------------------------------------------ COVID-19

COVID_HEADER = ["patientid", "offset", "sex", "age", "finding", "RT_PCR_positive", "survival",
                "intubated", "intubation_present", "went_icu", "in_icu",
                "needed_supplemental_O2", "extubated", "temperature", "pO2_saturation",
                "leukocyte_count", "neutrophil_count", "lymphocyte_count", "view", "modality",
                "date", "location", "folder", "filename", "doi", "url", "license",
                "clinical_notes", "other_notes", ""]
#: patientid, sex, age, finding, view, modality, folder, filename
COVID_ROWS = [
    ("2", "M", "65", "Pneumonia/Viral/COVID-19", "PA", "X-ray", "images", "auntminnie-a.jpg"),
    ("2", "M", "65", "Pneumonia/Viral/COVID-19", "L", "X-ray", "images", "auntminnie-b.jpg"),
    ("3", "F", "", "Pneumonia/Bacterial/Streptococcus", "AP Supine", "X-ray", "images", "s.png"),
    ("4", "", "50", "No Finding", "PA", "X-ray", "images", "nf.jpeg"),
    ("5", "F", "30", "Tuberculosis", "PA", "X-ray", "images", "tb.jpg"),
    ("6", "M", "70", "Pneumonia/Viral/COVID-19", "Axial", "CT", "volumes", "ct.nii.gz"),
    ("7", "F", "45", "todo", "AP", "X-ray", "images", "todo.jpg"),
]


def make_covid(root: Path) -> Path:
    """A clone of covid-chestxray-dataset: ``metadata.csv`` + ``images/``."""
    rows = []
    for pid, sex, age, finding, view, modality, folder, name in COVID_ROWS:
        row = dict.fromkeys(COVID_HEADER, "")
        row.update(patientid=pid, offset="0", sex=sex, age=age, finding=finding, view=view,
                   modality=modality, folder=folder, filename=name, license="CC BY-NC-SA 4.0")
        rows.append([row[c] for c in COVID_HEADER])
        if modality == "X-ray":
            stub_image(root / folder / name, seed=len(rows))
    write_csv(root / "metadata.csv", COVID_HEADER, rows)
    return root


# ------------------------------------------------------------------------------ ISIC

def make_isic2019(root: Path) -> Path:
    gt = [("ISIC_0000000", "MEL"), ("ISIC_0000001", "NV"), ("ISIC_0000002_downsampled", "BCC"),
          ("ISIC_0000003", "UNK")]
    cols = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
    write_csv(root / "ISIC_2019_Training_GroundTruth.csv", ["image", *cols],
              [[img, *("1.0" if c == cls else "0.0" for c in cols)] for img, cls in gt])
    write_csv(root / "ISIC_2019_Training_Metadata.csv",
              ["image", "age_approx", "anatom_site_general", "lesion_id", "sex"],
              [["ISIC_0000000", "55.0", "anterior torso", "BCN_0000001", "female"],
               ["ISIC_0000001", "", "", "", ""],
               ["ISIC_0000002_downsampled", "30.0", "head/neck", "BCN_0000001", "male"]])
    for i, (img, _) in enumerate(gt):
        stub_image(root / "ISIC_2019_Training_Input" / f"{img}.jpg", seed=i, mode="RGB")
    return root


def make_isic2020(root: Path) -> Path:
    header = ["image_name", "patient_id", "lesion_id", "sex", "age_approx",
              "anatom_site_general_challenge", "diagnosis", "benign_malignant", "target"]
    rows = [["ISIC_2637011", "IP_7279968", "IL_7972535", "male", "45.0", "head/neck",
             "unknown", "benign", "0"],
            ["ISIC_0015719", "IP_3075186", "IL_4649854", "female", "45.0", "upper extremity",
             "melanoma", "malignant", "1"],
            ["ISIC_0052212", "IP_2842074", "IL_9087444", "", "", "lower extremity",
             "solar lentigo", "benign", "0"]]
    write_csv(root / "ISIC_2020_Training_GroundTruth.csv", header, rows)
    for i, r in enumerate(rows):
        stub_image(root / "train" / f"{r[0]}.jpg", seed=i, mode="RGB")
    return root


# ------------------------------------------------------------------------------ IXI

def make_ixi(root: Path) -> Path:
    """``root/IXI.xlsx`` (sheets Table, Ethnicity) + ``root/IXI-T1/IXInnn-<site>-T1.nii.gz``."""
    import nibabel as nib

    table = pd.DataFrame(
        [[2, 2, 164.0, 58.0, 1, 2, 5, 2, "1977-01-17", 1, "2005-11-18", 35.8],
         [12, 1, 175.0, 70.0, 3, 1, 1, 5, "1966-08-20", 1, "2005-06-01", 38.78],
         [12, 1, 175.0, 70.0, 3, 1, 1, 5, "1966-08-20", 1, "2005-06-01", 38.78],
         [13, 1, 0.0, 0.0, 0, 2, 1, 5, "1958-09-15", 1, "2005-06-01", 46.71],
         [14, 2, 163.0, 65.0, 2, 3, 1, 5, "", 1, "2005-06-09", None],
         [14, 1, 163.0, 65.0, 2, 3, 1, 5, "", 1, "2005-06-09", None],
         [99, 1, 180.0, 80.0, 1, 1, 1, 1, "", 1, "", 50.0]],
        columns=["IXI_ID", "SEX_ID (1=m, 2=f)", "HEIGHT", "WEIGHT", "ETHNIC_ID", "MARITAL_ID",
                 "OCCUPATION_ID", "QUALIFICATION_ID", "DOB", "DATE_AVAILABLE", "STUDY_DATE",
                 "AGE"])
    ethnic = pd.DataFrame([[1, "White"], [2, "Black or black British"],
                           [3, "Asian or Asian British"], [4, "Chinese"], [5, "Other"]],
                          columns=["ID", "ETHNIC"])
    with pd.ExcelWriter(root / "IXI.xlsx") as w:
        table.to_excel(w, sheet_name="Table", index=False)
        ethnic.to_excel(w, sheet_name="Ethnicity", index=False)
    rng = np.random.default_rng(0)
    for key, site in ((2, "Guys-0828"), (12, "Guys-0829"), (13, "HH-1211"), (14, "IOP-0889")):
        data = rng.integers(0, 300, (16, 20, 12)).astype(np.int16)
        path = root / "IXI-T1" / f"IXI{key:03d}-{site}-T1.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return root


# ------------------------------------------------------------------------------ FairGenMed

def make_fairgenmed(root: Path) -> Path:
    """``root/data_summary.csv`` + ``Training|Validation|Test/data_XXXXX.npz``."""
    rng = np.random.default_rng(0)
    specs = [("data_00001.npz", "Training", 0, 1, 1, "training", "61.2"),
             ("data_00002.npz", "Training", "black", 0, 0, "training", "70.0"),
             ("data_00003.npz", "Validation", 2, 1, 0, "validation", ""),
             ("data_00004.npz", "Test", 1, 0, 1, "test", "55.5")]
    for name, folder, race, male, glaucoma, _use, _age in specs:
        (root / folder).mkdir(parents=True, exist_ok=True)
        np.savez(root / folder / name, slo_fundus=rng.integers(0, 256, (12, 16), dtype=np.uint8),
                 race=np.array(race), male=np.array(male), hispanic=np.array(0),
                 glaucoma=np.array(glaucoma), oct_bscans=np.zeros((2, 4, 4), np.uint8))
    write_csv(root / "data_summary.csv", ["filename", "age", "gender", "race", "use"],
              [[n, age, "", "", use] for n, _f, _r, _m, _g, use, age in specs])
    return root


# ------------------------------------------------------------------------------ cardiac

def _nifti(path: Path, data: np.ndarray) -> Path:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.5, 10.0, 1.0])), str(path))
    return path


def make_acdc(root: Path) -> Path:
    """``root/database/{training,testing}/patientNNN/`` with Info.cfg, ED frame and its gt."""
    rng = np.random.default_rng(0)
    specs = [("training", "patient001", "DCM", 184.0, 95.0, 1),
             ("training", "patient002", "HCM", 160.0, 70.0, 1),
             ("training", "patient061", "NOR", 170.0, 60.0, 1),
             ("testing", "patient101", "MINF", 175.0, 0.0, 1)]
    for split, pid, group, h, w, ed in specs:
        folder = root / "database" / split / pid
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "Info.cfg").write_text(
            f"ED: {ed}\nES: 12\nGroup: {group}\nHeight: {h}\nNbFrame: 30\nWeight: {w}\n")
        _nifti(folder / f"{pid}_frame{ed:02d}.nii.gz",
               rng.integers(0, 500, (18, 14, 5)).astype(np.int16))
        gt = np.zeros((18, 14, 5), np.uint8)
        gt[5:9, 4:8, :] = 3
        _nifti(folder / f"{pid}_frame{ed:02d}_gt.nii.gz", gt)
    return root


def make_mnms(root: Path) -> Path:
    """``root/211230_M&Ms_...csv`` + ``Training/Labeled/<code>/<code>_sa.nii.gz`` (4-D)."""
    rng = np.random.default_rng(1)
    header = ["External code", "VendorName", "Vendor", "Centre", "ED", "ES", "Age", "Pathology",
              "Sex", "Height", "Weight"]
    rows = [["A0S9V9", "Siemens", "A", "1", "0", "9", "67", "NOR", "M", "170", "70"],
            ["A1D0Q7", "Philips", "B", "2", "2", "10", "45", "DCM", "F", "", ""],
            ["A1K2P5", "Philips", "B", "3", "0", "8", "51", "HCM", "M", "", ""],
            ["B0N3W8", "GE", "C", "4", "1", "9", "30", "NOR", "F", "160", "50"]]
    write_csv(root / "211230_M&Ms_Dataset_information_diagnosis_opendataset.csv", header, rows)
    where = {"A0S9V9": "Training/Labeled", "A1D0Q7": "Training/Labeled",
             "A1K2P5": "Validation", "B0N3W8": "Testing"}
    for code, folder in where.items():
        data = rng.integers(0, 400, (16, 12, 6, 3)).astype(np.int16)
        _nifti(root / folder / code / f"{code}_sa.nii.gz", data)
        gt = np.zeros((16, 12, 6, 3), np.uint8)
        gt[4:8, 3:6] = 2
        _nifti(root / folder / code / f"{code}_sa_gt.nii.gz", gt)
    return root
