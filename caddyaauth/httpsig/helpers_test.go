package httpsig

import "encoding/base64"

func encStd(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
