# Sourced by the run scripts: their development data folder, from the first argument or $BOOKQA_DATA,
# printed as an absolute path (the scripts work from the repository root).
data_dir() {  # SCRIPT ARGUMENT WHAT-IT-HOLDS
    local d=${2:-${BOOKQA_DATA:-}}
    if [ -z "$d" ] || [ ! -d "$d" ]; then
        echo "usage: $1 DATA_DIR  (or BOOKQA_DATA=DATA_DIR $1); DATA_DIR holds $3" >&2
        [ -z "$d" ] || echo "not a folder: $d" >&2
        return 2
    fi
    (cd "$d" && pwd)
}
