#!/bin/sh
# Issue 21 item 6: the bundled head type (stats_m_x5) and frame_m on JHMDB's 3 splits, with today's
# motion descriptor and with the rich one; one tools.experiment command per (split, motion) row,
# then tools.collect. Appearance features and both motion streams come from the feature cache.
# Split 2 is refused by tools.experiment's split check (issue 21 item 5: walk has one train clip in
# ../shared's split-2 list), so a refused row is reported and the others go on.
SHARED=${EDGEVID_SHARED:-../shared}
EXTRACTOR=${EXTRACTOR:-$SHARED/models/mobilenet_v2_1.0_224_quant.tflite}
B="--dataset jhmdb --data $SHARED/data/jhmdb --splits $SHARED/data/jhmdb_splits --extractor $EXTRACTOR --fit windows --window 1.2 --frames 12 --workers 1 --heads frame_m,stats_m_x5"
for s in 1 2 3; do
  for m in dis_ultrafast-160x120 dis_ultrafast-160x120-rich100ms; do
    python -m tools.experiment $B --split $s --motion $m --out runs/rich-split$s-$m || echo "split $s $m: refused or failed"
  done
done
python -m tools.collect runs/rich-split1-* runs/rich-split3-* --out experiments/jhmdb-rich-motion
